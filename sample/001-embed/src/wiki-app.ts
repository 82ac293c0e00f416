import express from 'express';

/**
 * A stand-in for Trac: an app we cannot change, with login and logout pages of its own and
 * a Server header we would rather not show.
 */
export function createWikiApp() {
  const app = express();
  app.use((_req, res, next) => {
    res.setHeader('server', 'LegacyWiki/0.9');
    next();
  });
  app.get('/login', (_req, res) => res.type('html').send('<h1>The wiki’s own login form</h1>'));
  app.get('/logout', (_req, res) => res.type('html').send('<h1>The wiki’s own logout</h1>'));
  app.get('/{*page}', (req, res) => {
    const page = req.path === '/' ? 'Start' : req.path.slice(1);
    const envPath = (req as unknown as { gatewayEnv?: Record<string, string> }).gatewayEnv?.['wiki.env_path'];
    res.type('html').send(`<h1>Wiki page: ${page}</h1>
<p>Instance: <code>${envPath}</code></p>
<p><a href="${req.baseUrl}/login">Log in</a> · <a href="${req.baseUrl}/logout">Log out</a> · <a href="/">Back to Nest</a></p>`);
  });
  return app;
}
