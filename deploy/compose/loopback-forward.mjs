// Development only. Forwards 0.0.0.0:9401 to the identity provider on
// 127.0.0.1:9400 inside the shared network namespace, so a browser or curl on
// the host reaches the provider at http://127.0.0.1:9400 (compose publishes
// host 9400 to this forwarder) and sees the same issuer URL the gateway does.
import net from 'node:net';

net.createServer((client) => {
  const upstream = net.connect(9400, '127.0.0.1');
  client.pipe(upstream).pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
}).listen(9401, '0.0.0.0');
