import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { DEMO_CREDENTIALS } from './auth.js';

async function bootstrap() {
  const app = await NestFactory.create(AppModule);
  app.enableShutdownHooks();
  const port = Number(process.env.PORT ?? 3000);
  const host = process.env.HOST ?? '127.0.0.1';
  await app.listen(port, host);
  Logger.log(`Sample running at http://${host}:${port}/`, 'Sample');
  Logger.log(`Demo login: ${DEMO_CREDENTIALS.username} / ${DEMO_CREDENTIALS.password}`, 'Sample');
}

void bootstrap();
