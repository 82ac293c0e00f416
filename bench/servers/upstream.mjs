// The Node upstream of the proxy rows: hello text, or streams (see streamListener).
import { createServer } from 'node:http';
import { ready, streamListener } from './shared.mjs';

const server = createServer(streamListener);
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => ready(server.address().port, () => new Promise((r) => server.close(r))));
