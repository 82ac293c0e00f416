// Slow clients of row 8, in a process of their own: N connections at once, each sending its
// request head in small pieces over `spreadMs`, then reading the whole response.
// Usage: node slow-client.mjs <url> <connections> <spreadMs>   prints one JSON line
import { connect } from 'node:net';

const [url, countArg, spreadArg] = process.argv.slice(2);
const { hostname, port, pathname, search } = new URL(url);
const count = Number(countArg);
const spread = Number(spreadArg);
const head = `GET ${pathname}${search} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUser-Agent: slow-client\r\nAccept: */*\r\nConnection: close\r\n\r\n`;
const pieces = 8;
const step = Math.ceil(head.length / pieces);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function one() {
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    let data = '';
    let done = false;
    const finish = (result) => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve(result);
    };
    socket.setEncoding('latin1');
    socket.on('data', (c) => (data += c));
    socket.on('error', (e) => finish({ error: e.code ?? e.message }));
    socket.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0);
      finish(status ? { status } : { error: 'no response' });
    });
    socket.setTimeout(30_000, () => finish({ error: 'timeout' }));
    socket.once('connect', async () => {
      for (let i = 0; i < pieces && !done; i++) {
        socket.write(head.slice(i * step, (i + 1) * step));
        await sleep(spread / pieces);
      }
    });
  });
}

const started = performance.now();
const results = await Promise.all(Array.from({ length: count }, one));
const statuses = {};
const errors = {};
for (const r of results) {
  if (r.error) errors[r.error] = (errors[r.error] ?? 0) + 1;
  else statuses[r.status] = (statuses[r.status] ?? 0) + 1;
}
process.stdout.write(`${JSON.stringify({ statuses, errors, seconds: (performance.now() - started) / 1000 })}\n`);
