import express from 'express';

/** An app with no login of its own: it trusts the REMOTE_USER the gateway hands it. */
export function createPrivateApp() {
  const app = express();
  app.get('/{*page}', (req, res) => {
    const user = req.headers['remote-user'];
    res.type('html').send(`<h1>Members only</h1><p>Hello, <b id="greeting">${user}</b>! (from the <code>remote-user</code> header)</p><p><a href="/">Back to Nest</a></p>`);
  });
  return app;
}
