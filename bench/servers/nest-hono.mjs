// Row 3: a Hono app (a fetch app) under @MountGateway('h', fetchApp(hono)).
import { Hono } from 'hono';
import { fetchApp, MountGateway } from '../../dist/index.js';
import { HELLO } from './shared.mjs';
import { serveNest } from './nest-shared.mjs';

const hono = new Hono();
hono.all('*', (c) => c.text(HELLO));
class Mounted {}
MountGateway('h', fetchApp(hono))(Mounted);
await serveNest({ controllers: [Mounted] });
