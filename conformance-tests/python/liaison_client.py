#!/usr/bin/env python3
"""A Liaison client in Python: search, read, and check the audit receipt.

What an integrating agency's system does, end to end:

1. generate gRPC stubs from the published proto/ files (no stubs are
   committed, so the example can never drift from the API);
2. get a token from the agency's identity provider (client credentials);
3. search for a person and read their records under a share context
   (purpose, justification, agreement);
4. read the error details a refused request carries (google.rpc.ErrorInfo);
5. as the agency's DPO, fetch the read's audit entry, the tree head and an
   inclusion proof, and verify the proof here with RFC 9162 arithmetic, so
   the receipt is trusted because it checks out, not because the gateway
   says so.

Run against `liaison demo` with ``--demo-dir``; see ``run-against-demo``.
Exits non-zero when anything does not hold.
"""

import argparse
import base64
import hashlib
import importlib
import importlib.resources
import json
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import grpc

REPO = pathlib.Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "proto"


def generate_stubs(out_dir: pathlib.Path) -> None:
    """Compiles liaison/v1/*.proto into out_dir with grpc_tools' protoc.

    google/protobuf/*.proto come from grpc_tools' own bundle; the API imports
    nothing else, and the google.rpc error types come from grpcio-status.
    """
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "liaison" / "v1").glob("*.proto"))
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc",
        f"-I{PROTO_ROOT}", f"-I{well_known}",
        f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
        *protos,
    ]
    subprocess.run(cmd, check=True, cwd=PROTO_ROOT)
    sys.path.insert(0, str(out_dir))


def fetch_token(token_url: str, client_id: str, secret: str) -> str:
    """OAuth 2.0 client credentials (RFC 6749 §4.4), client_secret_basic."""
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    req = urllib.request.Request(
        token_url,
        data=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)["access_token"]


# RFC 9162 §2.1: leaves and nodes are hashed with distinct prefixes so a leaf
# can never be passed off as an interior node.
def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf: bytes, index: int, size: int, path: list, root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: recompute the root from the leaf and its audit path."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def error_info(err: grpc.RpcError):
    """The google.rpc.ErrorInfo a Liaison error carries, or None."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(err)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


class Failure(Exception):
    pass


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise Failure(what)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", type=pathlib.Path, help="a running `liaison demo`'s directory")
    ap.add_argument("--gateway", help="host:port (default: the demo's)")
    ap.add_argument("--isa", default="met-hackney-children")
    ap.add_argument("--purpose", default="safeguarding-children")
    args = ap.parse_args()
    if args.demo_dir is None:
        ap.error("give --demo-dir (a principals file is the Rust runner's job)")

    state = json.loads((args.demo_dir / "demo.json").read_text())
    gateway = args.gateway or state["gateway"].split("://", 1)[1]

    def token_for(profile: str) -> str:
        p = state["clients"][profile]
        return fetch_token(p["token_url"], p["client_id"], p["client_secret"])

    with tempfile.TemporaryDirectory(prefix="liaison-stubs-") as stubs:
        generate_stubs(pathlib.Path(stubs))
        types_pb2 = importlib.import_module("liaison.v1.types_pb2")
        sharing_pb2 = importlib.import_module("liaison.v1.sharing_pb2")
        sharing_grpc = importlib.import_module("liaison.v1.sharing_pb2_grpc")
        oversight_pb2 = importlib.import_module("liaison.v1.oversight_pb2")
        oversight_grpc = importlib.import_module("liaison.v1.oversight_pb2_grpc")

        channel = grpc.insecure_channel(gateway)  # the demo serves plaintext on loopback
        sharing = sharing_grpc.SharingServiceStub(channel)
        oversight = oversight_grpc.OversightServiceStub(channel)
        worker = [("authorization", f"Bearer {token_for('hackney-social-worker')}")]
        dpo = [("authorization", f"Bearer {token_for('hackney-dpo')}")]

        context = types_pb2.ShareContext(
            purpose=args.purpose,
            justification="Section 47 enquiry following a school referral",
            isa_id=args.isa,
            case_reference="HCK-2026-0042",
        )
        query = sharing_pb2.PersonQuery(
            given_name="Leah", family_name="Marsh",
            date_of_birth=types_pb2.Date(year=2013, month=5, day=14),
        )

        # A refusal is an answer too: read its reason, not its message.
        try:
            sharing.SearchPersons(
                sharing_pb2.SearchPersonsRequest(context=types_pb2.ShareContext(isa_id=args.isa), query=query),
                metadata=worker, timeout=10,
            )
            raise Failure("a search without a purpose was answered")
        except grpc.RpcError as err:
            info = error_info(err)
            expect(err.code() == grpc.StatusCode.INVALID_ARGUMENT, f"no purpose: got {err.code()}")
            expect(info is not None and info.domain == "liaison.v1", "no purpose: no ErrorInfo in liaison.v1")
            print(f"refused as documented: {err.code().name} {info.reason}")

        found = sharing.SearchPersons(
            sharing_pb2.SearchPersonsRequest(context=context, query=query), metadata=worker, timeout=10,
        )
        expect(len(found.matches) > 0, "the search found nobody")
        person = found.matches[0].person
        print(f"found {person.person_id}: {person.names[0].given_names} {person.names[0].family_name}")

        read = sharing.GetRecords(
            sharing_pb2.GetRecordsRequest(context=context, person_id=person.person_id),
            metadata=worker, timeout=10,
        )
        expect(read.HasField("receipt"), "the read carries no receipt")
        print(f"read {len(read.records)} records; receipt {read.receipt.entry_id}")

        # The DPO's view: resolve the receipt and prove it is in the ledger.
        entry = oversight.GetAuditEntry(
            oversight_pb2.GetAuditEntryRequest(entry_id=read.receipt.entry_id), metadata=dpo, timeout=10,
        ).entry
        leaf = leaf_hash(entry.canonical)
        expect(leaf.hex() == entry.leaf_hash == read.receipt.leaf_hash,
               "the entry's canonical bytes do not hash to the receipt's leaf")
        # The head may trail a receipt issued a moment ago; wait, briefly,
        # for it to cover ours rather than report a false failure.
        deadline = time.monotonic() + 5
        while True:
            head = oversight.GetTreeHead(oversight_pb2.GetTreeHeadRequest(), metadata=dpo, timeout=10).head
            if head.tree_size >= read.receipt.sequence or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        expect(head.tree_size >= read.receipt.sequence,
               f"the tree head ({head.tree_size}) does not cover receipt {read.receipt.sequence}")
        proof = oversight.GetInclusionProof(
            oversight_pb2.GetInclusionProofRequest(entry_id=read.receipt.entry_id, tree_size=head.tree_size),
            metadata=dpo, timeout=10,
        )
        expect(proof.root_hash == head.root_hash, "the proof is not against the published tree head")
        ok = verify_inclusion(
            leaf, proof.leaf_index, proof.tree_size,
            [bytes.fromhex(h) for h in proof.audit_path], bytes.fromhex(head.root_hash),
        )
        expect(ok, "the inclusion proof does not verify")
        print(f"receipt verified: leaf {proof.leaf_index} of {proof.tree_size}, root {head.root_hash}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as f:
        print(f"FAILED: {f}", file=sys.stderr)
        sys.exit(1)
    except grpc.RpcError as err:
        print(f"FAILED: {err.code().name}: {err.details()}", file=sys.stderr)
        sys.exit(1)
