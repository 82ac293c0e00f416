#!/usr/bin/env node
import { ListenError, parseServeArgs, serve, SERVE_HELP, TargetError, UsageError } from './serve.js';

const USAGE = `Usage: nest-gateway serve <target> [--port N] [--host H] [--prefix P] [--profile]
       nest-gateway serve --help`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(SERVE_HELP);
    return 0;
  }
  if (command !== 'serve') {
    process.stderr.write(`nest-gateway: ${command ? `unknown command '${command}'` : 'missing command'}\n${USAGE}\n`);
    return 2;
  }
  let options;
  try {
    options = parseServeArgs(rest);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`nest-gateway serve: ${error.message}\n${USAGE}\n`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(SERVE_HELP);
    return 0;
  }
  let serving;
  try {
    serving = await serve(options);
  } catch (error) {
    if (!(error instanceof TargetError) && !(error instanceof ListenError)) throw error;
    process.stderr.write(`nest-gateway serve: ${error.message}\n`);
    return error instanceof TargetError ? 2 : 1;
  }
  process.stdout.write(`nest-gateway: serving ${serving.description}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await serving.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`nest-gateway: ${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
