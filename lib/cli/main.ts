#!/usr/bin/env node
import { constants } from 'node:os';
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
  await stopSignal();
  await serving.close();
  return 0;
}

/**
 * Resolves on the first SIGINT or SIGTERM. The listeners stay: a second signal exits at once,
 * for a user who will not wait for the app's shutdown (a hook that hangs).
 */
function stopSignal(): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) process.exit(128 + constants.signals[signal]);
      stopping = true;
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`nest-gateway: ${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
