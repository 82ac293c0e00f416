import { Injectable, Module } from '@nestjs/common';
import { GatewayModule, GatewayService, MountGateway } from 'nest-gateway';
import type { IncomingMessage, ServerResponse } from 'node:http';
import request from 'supertest';
import { startNest, type Started } from './fixtures/start.js';

const neverAnswers = (_req: IncomingMessage, _res: ServerResponse) => undefined;

@MountGateway('hangs', neverAnswers)
class HangingMount {}

@Injectable()
class SettingsService {
  readonly gatewayTimeout = 150;
}

@Module({ providers: [SettingsService], exports: [SettingsService] })
class SettingsModule {}

describe('GatewayModule', () => {
  describe('forRootAsync', () => {
    let s: Started;
    beforeAll(async () => {
      s = await startNest({
        imports: [
          GatewayModule.forRootAsync({
            imports: [SettingsModule],
            inject: [SettingsService],
            useFactory: async (settings: SettingsService) => ({ timeout: settings.gatewayTimeout }),
          }),
        ],
        controllers: [HangingMount],
      });
    });
    afterAll(() => s.close());

    it('takes options from an async factory (a module-wide timeout gives 504)', async () => {
      const res = await request(s.url).get('/hangs/x');
      expect(res.status).toBe(504);
      expect(s.logger.lines.some((l) => l.level === 'warn' && l.message.includes('/hangs'))).toBe(true);
    });

    it('provides GatewayService globally', () => {
      expect(s.app.get(GatewayService)).toBeInstanceOf(GatewayService);
    });
  });

  describe('forRoot', () => {
    let s: Started;
    beforeAll(async () => {
      s = await startNest({ imports: [GatewayModule.forRoot({ timeout: 100 })], controllers: [HangingMount] });
    });
    afterAll(() => s.close());

    it('takes options directly', async () => {
      expect((await request(s.url).get('/hangs')).status).toBe(504);
    });
  });
});
