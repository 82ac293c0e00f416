import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { DEMO_CREDENTIALS } from './auth.js';
import { GIT_BACKEND, gitAvailable } from './git.js';
import { PYTHON } from './legacy.js';

async function bootstrap() {
  const app = await NestFactory.create(AppModule);
  app.enableShutdownHooks();
  const port = Number(process.env.PORT ?? 3000);
  const host = process.env.HOST ?? '127.0.0.1';
  await app.listen(port, host);
  Logger.log(`Sample running at http://${host}:${port}/`, 'Sample');
  Logger.log(`Demo login: ${DEMO_CREDENTIALS.username} / ${DEMO_CREDENTIALS.password}`, 'Sample');
  if (gitAvailable) Logger.log(`Git: git clone http://${host}:${port}/git/hello.git`, 'Sample');
  else Logger.warn(`Git over HTTP skipped: ${GIT_BACKEND} not found (Debian: apt-get install git)`, 'Sample');
  if (!PYTHON) Logger.warn('The legacy Python app is skipped: no python3 found (Debian: apt-get install python3)', 'Sample');
}

void bootstrap();
