import { UseGuards } from '@nestjs/common';
import { existsSync } from 'node:fs';
import { cgiApp, MountGateway, RemoteUserGuard } from 'nest-gateway';
import { sampleFile } from './sample-files.js';

export const PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3'].find((path) => existsSync(path));

/** A Python WSGI app run as CGI, behind the Nest login: it sees the user as REMOTE_USER. */
@MountGateway('legacy', cgiApp(sampleFile('legacy/app.py'), { interpreter: PYTHON ?? 'python3' }))
@UseGuards(RemoteUserGuard)
export class LegacyMount {}
