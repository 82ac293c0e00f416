// Row 5: @MountGateway('c', cgiApp(script)), default options. Usage: node nest-cgi.mjs <script>
import { cgiApp, MountGateway } from '../../dist/index.js';
import { serveNest } from './nest-shared.mjs';

class Cgi {}
MountGateway('c', cgiApp(process.argv[2]))(Cgi);
await serveNest({ controllers: [Cgi] });
