// One HTTP/1.1 request written byte for byte on a socket (what fetch would normalise or refuse):
// resolves with everything the server sent back.
import net from 'node:net';

export function rawRequest(port, text) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(text));
    let data = '';
    sock.on('data', (d) => { data += d.toString('latin1'); });
    sock.on('end', () => resolve(data));
    sock.on('error', reject);
    sock.setTimeout(15000, () => { sock.destroy(); reject(new Error('socket timeout')); });
  });
}
