/**
 * `tokenlease status`: GetUsage from a running quota service, as a table or JSON, once or
 * refreshed with --watch until SIGINT/SIGTERM.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { createQuotaClient } from '../../common/grpc/quota-client.ts';
import type { UsageSnapshot } from '../../common/quota-api.ts';
import { loadConfig, USAGE, type Env, type StatusConfig } from './config.ts';
import { renderStatus } from './render.ts';

function render(config: StatusConfig, snapshot: UsageSnapshot): string {
  return config.output === 'json' ? `${JSON.stringify(snapshot)}\n` : renderStatus(snapshot);
}

function describeError(config: StatusConfig, error: unknown): string {
  return `tokenlease status: cannot read usage from the quota service at ${config.quota}: ${(error as Error).message}\n`;
}

export async function run(argv: readonly string[], env: Env): Promise<number> {
  const config = loadConfig(argv, env);
  if (config.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const client = createQuotaClient({ target: config.quota });
  try {
    if (!config.watch) {
      try {
        process.stdout.write(render(config, await client.usage(config.provider)));
        return 0;
      } catch (error) {
        process.stderr.write(describeError(config, error));
        return 1;
      }
    }
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
    const clear = process.stdout.isTTY && config.output === 'table';
    try {
      while (!stop.signal.aborted) {
        try {
          const text = render(config, await client.usage(config.provider));
          const stamp =
            config.output === 'table'
              ? `${new Date().toISOString()}  (every ${config.intervalMs} ms, Ctrl-C to stop)\n\n`
              : '';
          process.stdout.write(
            `${clear ? '\x1b[H\x1b[2J' : ''}${stamp}${text}${clear || config.output === 'json' ? '' : '\n'}`,
          );
        } catch (error) {
          // Keep watching: the service may be restarting.
          process.stderr.write(describeError(config, error));
        }
        await sleep(config.intervalMs, undefined, { signal: stop.signal }).catch(() => {});
      }
    } finally {
      process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    }
    return 0;
  } finally {
    client.close();
  }
}
