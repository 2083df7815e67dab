//! The published Liaison v1 API: the common data model, the sharing, oversight
//! and administration services, and the error reasons they report.
//!
//! Generated from `proto/liaison/v1/*.proto` at build time with protox, so
//! integrators and the gateway share one source of truth and no `protoc` is
//! needed.

pub mod codec;

/// `liaison.v1`: messages, enums, service clients and servers.
pub mod v1 {
    #![allow(
        missing_docs,
        clippy::all,
        clippy::pedantic,
        missing_debug_implementations
    )]
    tonic::include_proto!("liaison.v1");
}

/// The encoded `FileDescriptorSet` of every `liaison.v1` file, for gRPC server
/// reflection and for tools that read the API at run time.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("liaison_descriptor");

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn descriptor_set_decodes_and_names_the_package() {
        let fds = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let names: Vec<_> = fds.file.iter().filter_map(|f| f.name.clone()).collect();
        assert!(
            names.iter().any(|n| n == "liaison/v1/types.proto"),
            "{names:?}"
        );
        assert!(fds.file.iter().all(|f| f.package.as_deref() != Some("")));
    }
}
