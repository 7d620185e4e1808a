/**
 * `tokenlease demo`: the whole path on one machine, then the same load without it, side by side.
 *
 *   simulated provider (ledger) <- sidecar per tenant <- tenants' SDK clients     (phase 1)
 *                                     | gRPC
 *                                  quota service (memory or Redis)
 *   simulated provider (ledger) <------------------------- tenants' SDK clients     (phase 2)
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parseDuration } from '../common/duration.ts';
import type { SimSettingsInput } from '../sim-provider/index.ts';
import { loadConfig, USAGE, type DemoConfig } from './config.ts';
import { ledgerFigures } from './ledger-figures.ts';
import { createLiveView } from './live-view.ts';
import { runPhase } from './phase.ts';
import { renderPicture } from './picture.ts';
import { loadScenario, SIM_TIMING, type Scenario, type Tenant } from './scenario.ts';
import { connectSim, startSimProcess, type SimHandle } from './sim-handle.ts';
import { DEMO_PROVIDER_KEY, startTokenleaseStack, type TokenleaseStack } from './stack.ts';
import {
  phaseSummary,
  renderSummary,
  SUMMARY_KIND,
  type DemoSummary,
  type TenantSummary,
} from './summary.ts';

type Out = NodeJS.WriteStream;

async function sidecarStats(
  stack: TokenleaseStack,
): Promise<Map<string, NonNullable<TenantSummary['sidecar']>>> {
  const stats = new Map<string, NonNullable<TenantSummary['sidecar']>>();
  for (const [budget, sidecar] of stack.sidecars) {
    const wait = await sidecar.metrics.leaseWait.get();
    const sum = wait.values.find((value) => value.metricName?.endsWith('_sum'))?.value ?? 0;
    const count = wait.values.find((value) => value.metricName?.endsWith('_count'))?.value ?? 0;
    const refusals = (await sidecar.metrics.upstreamRefusals.get()).values.reduce(
      (total, value) => total + value.value,
      0,
    );
    stats.set(budget, {
      upstreamRefusals: refusals,
      avgLeaseWaitMs: count === 0 ? 0 : Math.round((sum / count) * 1000),
      leases: count,
    });
  }
  return stats;
}

/** The provider's URL with the path of the example's real baseURL (`/api/coding/paas/v4`, `/v1`). */
function providerBase(simUrl: string, exampleBaseURL: string): string {
  return `${simUrl}${new URL(exampleBaseURL).pathname.replace(/\/+$/, '')}`;
}

/** A requests limit as calls per second, for the picture (the tightest short window). */
function rateLimit(scenario: Scenario): { perS: number; label: string } | undefined {
  let best: { perS: number; label: string } | undefined;
  for (const limit of scenario.provider.spec.limits) {
    if (limit.dimension !== 'requests' || limit.window === undefined) continue;
    const windowMs = parseDuration(limit.window) ?? 0;
    if (windowMs > 60_000) continue;
    const perS = limit.amount / (windowMs / 1000);
    if (!best || perS < best.perS)
      best = { perS, label: `${limit.amount}/${limit.window} = ${perS.toFixed(0)}/s` };
  }
  return best;
}

async function runDemo(config: DemoConfig, out: Out): Promise<DemoSummary> {
  const exampleFile = (await loadScenario(config.flavour, config.tenants, 'http://placeholder')).provider;
  const simSettings: SimSettingsInput = {
    flavor: exampleFile.spec.flavor ?? (exampleFile.spec.api === 'anthropic' ? 'anthropic' : 'openai'),
    limits: exampleFile.spec.limits,
    ...SIM_TIMING,
  };
  const sim: SimHandle = config.providerUrl
    ? await connectSim(config.providerUrl, simSettings)
    : await startSimProcess(simSettings);
  try {
    const base = providerBase(sim.url, exampleFile.spec.baseURL);
    const scenario = await loadScenario(config.flavour, config.tenants, base);
    const limits = scenario.provider.spec.limits;
    const phaseSeconds = (config.durationMs / 1000).toFixed(0);
    const workers = scenario.tenants.reduce((sum, tenant) => sum + tenant.workers, 0);
    out.write(
      `tokenlease demo: ${scenario.tenants.length} tenants (${scenario.tenants.map((t) => `${t.name}: weight ${t.weight}, ${t.workers} clients`).join(', ')}), ` +
        `${workers} clients calling back to back with the official ${scenario.plan.client === 'openai' ? 'openai' : '@anthropic-ai/sdk'} SDK (maxRetries 2)\n` +
        `provider: ${config.flavour}-flavoured simulation at ${base} (${sim.embedded ? 'its own process' : 'given by --provider-url'}), ` +
        `limits ${limits.map((limit) => (limit.window ? `${limit.dimension} ${limit.amount}/${limit.window}` : `${limit.dimension} ${limit.amount}`)).join(', ')}; ` +
        `a call takes about ${(SIM_TIMING.latencyMs + SIM_TIMING.perTokenMs * SIM_TIMING.outputTokens) / 1000}s\n` +
        `budgets: ${scenario.file}\n\n`,
    );

    // Phase 1: through tokenlease.
    const stack = await startTokenleaseStack(scenario.budgets, scenario.tenants, config.redisUrl);
    let first;
    let stats;
    try {
      out.write(
        `1/2 with tokenlease for ${phaseSeconds}s: quota service on ${config.redisUrl ? `Redis ${config.redisUrl}` : 'the embedded in-memory store'} ` +
          `at ${stack.quotaTarget} (see it with: tokenlease status --quota ${stack.quotaTarget} --watch), one sidecar per tenant\n`,
      );
      const sidecarTarget = (tenant: Tenant) => {
        const url = stack.sidecars.get(tenant.budget)!.url;
        return {
          kind: scenario.plan.client,
          baseURL: scenario.plan.client === 'anthropic' ? url : `${url}/v1`,
          apiKey: 'unused-the-sidecar-holds-the-key',
          model: scenario.plan.model,
        };
      };
      first = await runPhase({
        title: 'with tokenlease',
        sim,
        tenants: scenario.tenants,
        targetOf: sidecarTarget,
        durationMs: config.durationMs,
        view: createLiveView(out),
        usage: () => stack.quota.usage(scenario.providerId),
        providerId: scenario.providerId,
      });
      stats = await sidecarStats(stack);
    } finally {
      await stack.close();
    }

    // Phase 2: the same tenants and prompts, straight at the provider.
    out.write(
      `\n2/2 the same load without tokenlease for ${phaseSeconds}s: each client calls the provider directly, retrying with the SDK's backoff\n`,
    );
    const second = await runPhase({
      title: 'without tokenlease',
      sim,
      tenants: scenario.tenants,
      targetOf: () => ({
        kind: scenario.plan.client,
        baseURL: scenario.plan.client === 'anthropic' ? sim.url : base,
        apiKey: DEMO_PROVIDER_KEY,
        model: scenario.plan.model,
      }),
      durationMs: config.durationMs,
      view: createLiveView(out),
      providerId: scenario.providerId,
    });

    const figuresA = ledgerFigures(first.entries, limits, first.startMs, first.loadEndMs);
    const figuresB = ledgerFigures(second.entries, limits, second.startMs, second.loadEndMs);
    const binding = figuresA.binding?.label ?? '';
    const summary: DemoSummary = {
      kind: SUMMARY_KIND,
      flavour: config.flavour,
      store: config.redisUrl ? 'redis' : 'memory',
      provider: scenario.providerId,
      providerUrl: sim.url,
      embeddedProvider: sim.embedded,
      durationMs: config.durationMs,
      binding,
      picture: config.picturePath,
      phases: {
        tokenlease: phaseSummary(figuresA, scenario.tenants, first.counters, first.elapsedMs, stats),
        direct: phaseSummary(figuresB, scenario.tenants, second.counters, second.elapsedMs),
      },
    };

    const rate = rateLimit(scenario);
    const concurrency = limits.find((limit) => limit.dimension === 'concurrency')?.amount;
    const notes = (phase: DemoSummary['phases']['tokenlease']) => [
      `${phase.ledger.refused} refused by the provider · ${phase.ledger.ok} completed · ` +
        `${((phase.limits.find((limit) => limit.label === binding)?.utilization ?? 0) * 100).toFixed(0)}% of ${binding} used`,
      `${phase.calls.failed} calls failed after retries · shares ` +
        `${phase.tenants.map((tenant) => (tenant.share * 100).toFixed(0)).join('/')}% ` +
        `for weights ${phase.tenants.map((tenant) => tenant.weight).join(':')}`,
    ];
    await mkdir(dirname(config.picturePath), { recursive: true });
    await writeFile(
      config.picturePath,
      renderPicture({
        title: `tokenlease demo: ${scenario.tenants.length} tenants at about 3x a ${config.flavour}-like provider's limit`,
        subtitle: `The provider's own ledger, ${phaseSeconds}s of load each. Limits: ${limits.map((limit) => (limit.window ? `${limit.dimension} ${limit.amount}/${limit.window}` : `${limit.dimension} ${limit.amount}`)).join(', ')}.`,
        left: {
          title: 'with tokenlease',
          series: figuresA.series,
          notes: notes(summary.phases.tokenlease),
          loadEndS: (first.loadEndMs - first.startMs) / 1000,
        },
        right: {
          title: 'without (SDK retries only)',
          series: figuresB.series,
          notes: notes(summary.phases.direct),
          loadEndS: (second.loadEndMs - second.startMs) / 1000,
        },
        rateLimitPerS: rate?.perS,
        rateLimitLabel: rate?.label,
        concurrencyLimit: concurrency,
      }),
    );
    return summary;
  } finally {
    await sim.close();
  }
}

export async function run(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Promise<number> {
  const config = loadConfig(argv, env, process.cwd());
  if (config.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const out = process.stdout;
  // Ctrl-C: exit at once; the 'exit' handlers stop the provider process the demo started.
  const interrupt = () => process.exit(130);
  process.once('SIGINT', interrupt).once('SIGTERM', interrupt);
  const summary = await runDemo(config, out);
  process.off('SIGINT', interrupt).off('SIGTERM', interrupt);
  out.write(`\n${renderSummary(summary)}\n\nPicture: ${summary.picture}\n\n`);
  out.write(`${JSON.stringify(summary)}\n`);
  return 0;
}
