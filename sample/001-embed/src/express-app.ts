import express from 'express';

/** An ordinary Express app that knows nothing about Nest. */
export function createExpressApp() {
  const app = express();
  app.get('/', (req, res) => {
    res.type('html').send(`<h1>Express</h1>
<p>Mounted at <code>${req.baseUrl}</code>, seeing <code>${req.url}</code>.</p>
<p>Hello, <b id="greeting">${req.headers['remote-user'] ?? 'anonymous visitor'}</b>!</p>
<p><a href="${req.baseUrl}/hello?name=Nest">Say hello</a> · <a href="/">Back to Nest</a></p>`);
  });
  app.get('/hello', (req, res) => {
    res.json({ greeting: `Hello, ${String(req.query.name ?? 'stranger')}!`, from: 'express' });
  });
  return app;
}
