// Reference for row 1: plain Express, the sub-app mounted with app.use('/x', sub).
import express from 'express';
import { helloExpress, ready } from './shared.mjs';

const app = express();
app.disable('x-powered-by');
app.use('/x', helloExpress());
const server = app.listen(0, '127.0.0.1', () => ready(server.address().port, () => new Promise((r) => server.close(r))));
