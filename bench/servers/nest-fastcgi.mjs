// Row 6: @MountGateway('f', fastcgiApp(php-fpm)), default options.
// Usage: node nest-fastcgi.mjs <php-fpm socket> <document root>
import { fastcgiApp, MountGateway } from '../../dist/index.js';
import { serveNest } from './nest-shared.mjs';

const app = fastcgiApp({ socketPath: process.argv[2] }, { documentRoot: process.argv[3] });
class Php {}
MountGateway('f', app)(Php);
await serveNest({ controllers: [Php], cleanup: () => app.close() });
