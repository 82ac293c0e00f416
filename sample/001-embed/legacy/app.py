# A legacy Python web app (WSGI, standard library only) run as a CGI script: the kind of app
# the sample puts behind the Nest login. It trusts REMOTE_USER and builds its links from
# SCRIPT_NAME, as any WSGI app does.
import html
from urllib.parse import parse_qs
from wsgiref.handlers import CGIHandler

NOTES = []


def app(environ, start_response):
    base = environ.get('SCRIPT_NAME', '')
    user = environ.get('REMOTE_USER', '(nobody)')
    if environ['REQUEST_METHOD'] == 'POST':
        size = int(environ.get('CONTENT_LENGTH') or 0)
        form = parse_qs(environ['wsgi.input'].read(size).decode())
        note = form.get('note', [''])[0]
        start_response('303 See Other', [('Location', base + '/?saved=' + html.escape(note))])
        return [b'']
    saved = parse_qs(environ.get('QUERY_STRING', '')).get('saved', [''])[0]
    body = f'''<!doctype html><html><head><meta charset="utf-8"><title>Legacy Python app</title></head><body>
<h1>A legacy Python app through CGI</h1>
<p>Hello, <b id="remote-user">{html.escape(user)}</b> (REMOTE_USER from the Nest login).</p>
<p>Mounted at <code id="script-name">{html.escape(base)}</code>; this link was built from SCRIPT_NAME:
<a id="self" href="{html.escape(base)}/">{html.escape(base)}/</a></p>
{f'<p id="saved">Saved: {html.escape(saved)}</p>' if saved else ''}
<form method="post" action="{html.escape(base)}/"><input name="note"><button>Save</button></form>
<p><a href="/">Back to the Nest app</a></p></body></html>'''
    start_response('200 OK', [('Content-Type', 'text/html; charset=utf-8')])
    return [body.encode()]


CGIHandler().run(app)
