// Rows 4, 7, 8: @MountGateway('p', proxyApp(upstream)). Usage: node nest-proxy.mjs <upstream URL>
import { MountGateway, proxyApp } from '../../dist/index.js';
import { serveNest } from './nest-shared.mjs';

const app = proxyApp(process.argv[2]);
class Proxied {}
MountGateway('p', app)(Proxied);
await serveNest({ controllers: [Proxied], cleanup: () => app.close() });
