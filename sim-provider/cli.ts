/**
 * `tokenlease sim-provider`: starts the simulated provider, prints its URL, and stops cleanly on
 * SIGINT/SIGTERM (in-flight and hung requests are cut, then the ledger summary is printed as JSON).
 */
import { HELP, loadConfig, type SimProviderConfig } from './config.ts';
import { startSimProvider } from './server.ts';

async function serve(config: SimProviderConfig): Promise<void> {
  if (config.help) {
    process.stdout.write(HELP);
    return;
  }
  const sim = await startSimProvider({ ...config.server, ...config.settings });
  const limits = config.settings.limits.map(
    (limit) =>
      `${limit.dimension}${limit.model ? `@${limit.model}` : ''}=${limit.amount}${limit.window ? `/${limit.window}` : ''}`,
  );
  process.stdout.write(
    `sim-provider (${config.settings.flavor}) listening on ${sim.url}  limits: ${limits.join(',') || 'none'}\n`,
  );
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const stop = (received: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve(received);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  process.stdout.write(`sim-provider: ${signal}, stopping\n`);
  await sim.close();
  process.stdout.write(`${JSON.stringify(sim.ledger.summary())}\n`);
}

/** Entry for the `tokenlease` dispatcher's command modules: resolves with the exit code. */
export async function run(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Promise<number> {
  await serve(loadConfig(argv, env));
  return 0;
}

/** Starts the server from command-line flags (and TOKENLEASE_SIM_* variables) until SIGINT/SIGTERM. */
export async function runSimProvider(argv: string[]): Promise<void> {
  await serve(loadConfig(argv));
}
