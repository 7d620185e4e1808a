/**
 * The `tokenlease` subcommands. Adding one is one line: its name, a one-line description, and a
 * lazy import of a module exporting `run(argv, env)`. Modules load only when their command runs,
 * so `tokenlease --help` stays fast and one command's dependencies never burden another.
 */
export type Env = Readonly<Record<string, string | undefined>>;

export interface CommandModule {
  /**
   * Runs the command with the arguments after its name; resolves with the exit code. Handles
   * `--help` itself. Throws ConfigError on a bad flag or environment value (the CLI prints it
   * and exits 2).
   */
  run(argv: readonly string[], env: Env): Promise<number>;
}

export interface Command {
  description: string;
  load(): Promise<CommandModule>;
}

export const COMMANDS: Readonly<Record<string, Command>> = {
  'quota-server': {
    description: 'serve the gRPC quota service (leases against the budgets YAML)',
    load: () => import('../controller/quota-server/main.ts'),
  },
  controller: {
    description: 'reconcile LLMProvider/LLMBudget into the store, write status, inject sidecars (Kubernetes)',
    load: () => import('../controller/k8s/main.ts'),
  },
  'sim-provider': {
    description: 'serve a simulated LLM provider that enforces limits exactly (tests, demo, benchmarks)',
    load: () => import('../sim-provider/cli.ts'),
  },
  sidecar: {
    description: "proxy the providers' APIs for an app, with leases from the quota service",
    load: () => import('../sidecar/main.ts'),
  },
  demo: {
    description: 'run the whole path on this machine under load, then without tokenlease, side by side',
    load: () => import('../demo/main.ts'),
  },
  status: {
    description: "print a running quota service's budgets: use vs limit, in flight, waiters, refusals",
    load: () => import('../cli/status/main.ts'),
  },
};
