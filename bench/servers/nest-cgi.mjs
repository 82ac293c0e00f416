// Rows 5, 7, 8: @MountGateway('c', cgiApp(script)), default options; row 7 streams through a
// second script mounted at /cs. Usage: node nest-cgi.mjs <script> <streaming script>
import { cgiApp, MountGateway } from '../../dist/index.js';
import { serveNest } from './nest-shared.mjs';

class Cgi {}
MountGateway('c', cgiApp(process.argv[2]))(Cgi);
class CgiStream {}
MountGateway('cs', cgiApp(process.argv[3]))(CgiStream);
await serveNest({ controllers: [Cgi, CgiStream] });
