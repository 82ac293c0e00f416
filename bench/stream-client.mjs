// Client of row 7, in a process of its own: GET <url>?mib=N (hashing what comes down), then
// POST N MiB to <url> (the server answers with the size and sha256 it saw).
// Usage: node stream-client.mjs <url> <MiB>   prints one JSON line
import { request } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { counter, MIB, source } from './servers/shared.mjs';

const [url, mibArg] = process.argv.slice(2);
const size = Number(mibArg) * MIB;
const call = (method, body) =>
  new Promise((resolve, reject) => {
    // Uploads announce their length, as browsers and curl do (CGI needs CONTENT_LENGTH).
    const headers = body ? { 'content-length': String(size) } : {};
    const req = request(`${url}?mib=${mibArg}`, { method, headers }, resolve);
    req.on('error', reject);
    if (body) pipeline(body, req).catch(reject);
    else req.end();
  });

const started = performance.now();
const down = counter();
const downResponse = await call('GET');
await pipeline(downResponse, down.sink);
const downSeconds = (performance.now() - started) / 1000;
const upStarted = performance.now();
const upResponse = await call('POST', source(size));
const up = JSON.parse(await new Response(Readable.toWeb(upResponse)).text());
const upSeconds = (performance.now() - upStarted) / 1000;
const want = counter();
await pipeline(source(size), want.sink);
const expected = want.result();
process.stdout.write(
  `${JSON.stringify({
    downStatus: downResponse.statusCode,
    upStatus: upResponse.statusCode,
    down: down.result(),
    up,
    expected,
    downSeconds,
    upSeconds,
  })}\n`,
);
