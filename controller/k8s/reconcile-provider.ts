/**
 * LLMProvider: validate, check the key's Secret, put Ready providers into the store, and report
 * use, effective limits, in-flight leases and upstream refusals in status. Conditions: Accepted,
 * CredentialsResolved, Refusing, Ready.
 */
import { providerSchema, type LLMProvider } from '../../common/budgets/types.ts';
import { becameFalse, becameTrue, setConditions, type ConditionInput } from './conditions.ts';
import type { Condition } from './crd/status-types.ts';
import type { ReconcileContext, ReconcileResult } from './reconcile-context.ts';
import { forStore, keyOf, type CustomObject } from './resources.ts';
import {
  declaredLimitStatus,
  limitStatus,
  limitsSummary,
  refusalTotals,
  useSummary,
} from './usage-status.ts';

export async function reconcileProvider(
  ctx: ReconcileContext,
  namespace: string,
  name: string,
): Promise<ReconcileResult> {
  const id = `${namespace}/${name}`;
  const object = ctx.providers.get(name, namespace);
  const versions = ctx.providerVersions;
  if (!object || object.metadata.deletionTimestamp) {
    versions.delete(id);
    ctx.ready.providers.delete(id);
    enqueueDependents(ctx, id);
    await ctx.publish();
    return {};
  }

  const conditions: ConditionInput[] = [];
  const parsed = providerSchema.safeParse(forStore(object));
  let provider: LLMProvider | undefined;
  if (!parsed.success) {
    // Terminal: only a new spec can fix it, and the watch brings that.
    const message = parsed.error.issues
      .map(
        (i) =>
          `spec${i.path
            .slice(1)
            .map((p) => `.${String(p)}`)
            .join('')}: ${i.message}`,
      )
      .join('; ');
    conditions.push({ type: 'Accepted', status: 'False', reason: 'InvalidSpec', message });
  } else {
    provider = parsed.data;
    conditions.push({ type: 'Accepted', status: 'True', reason: 'Valid', message: 'the spec is valid' });
    conditions.push(await credentials(ctx, provider));
  }
  const ready = provider !== undefined && conditions.every((c) => c.status === 'True');
  if (ready) ctx.ready.providers.set(id, provider!);
  else ctx.ready.providers.delete(id);
  const version = `${object.metadata.generation ?? 0}|${ready}`;
  if (versions.get(id) !== version) {
    versions.set(id, version);
    enqueueDependents(ctx, id);
  }
  await ctx.publish();

  const previous = object.status?.conditions as Condition[] | undefined;
  const usage = ready ? await ctx.usage(id) : undefined;
  const limits = (usage?.limits ?? []).filter((l) => l.scope === 'provider').map(limitStatus);
  const refusals = refusalTotals(usage?.budgets ?? []);
  const before = (object.status?.upstreamRefusals as { total?: number } | undefined)?.total ?? 0;
  if (usage) {
    conditions.push(
      refusals.total > before
        ? {
            type: 'Refusing',
            status: 'True',
            reason: 'UpstreamRefusals',
            message: `${refusals.total - before} upstream refusals since the last status (${JSON.stringify(refusals.byClass)})`,
          }
        : {
            type: 'Refusing',
            status: 'False',
            reason: 'NoNewRefusals',
            message: 'no upstream refusals since the last status',
          },
    );
  }
  const failing = conditions.find((c) => c.status !== 'True' && c.type !== 'Refusing');
  conditions.push(
    failing
      ? { type: 'Ready', status: 'False', reason: failing.reason, message: failing.message }
      : {
          type: 'Ready',
          status: 'True',
          reason: 'InForce',
          message: 'the limits are in force on every quota-service replica',
        },
  );

  const declared = (provider?.spec.limits ?? []).map(declaredLimitStatus);
  const status = {
    observedGeneration: object.metadata.generation,
    conditions: setConditions(previous, conditions, object.metadata.generation, ctx.now()),
    limits: usage ? limits : declared,
    inFlight: usage?.inFlight ?? 0,
    waiters: usage?.waiters ?? 0,
    upstreamRefusals: refusals,
    summary: {
      limits: limitsSummary(declared),
      use: useSummary(limits),
    },
    ...(usage && usage.closedUntilMs > Date.now()
      ? { closedUntil: new Date(usage.closedUntilMs).toISOString(), closedReason: usage.closedReason }
      : {}),
  };
  const written = await ctx.status.write(object, status);
  if (written.written) await providerEvents(ctx, object, previous, conditions);
  return { requeueAfterMs: Math.min(ctx.resyncMs, written.retryAfterMs ?? Infinity) };
}

async function credentials(ctx: ReconcileContext, provider: LLMProvider): Promise<ConditionInput> {
  const ref = provider.spec.credentials?.secretRef;
  const type = 'CredentialsResolved';
  if (!ref) return { type, status: 'True', reason: 'NoSecret', message: 'no Secret is referenced' };
  const secret = await ctx.readSecret(provider.metadata.namespace, ref.name);
  if (!secret)
    return {
      type,
      status: 'False',
      reason: 'SecretMissing',
      message: `Secret ${provider.metadata.namespace}/${ref.name} does not exist`,
    };
  if (secret.data?.[ref.key] === undefined && secret.stringData?.[ref.key] === undefined) {
    return {
      type,
      status: 'False',
      reason: 'SecretKeyMissing',
      message: `Secret ${provider.metadata.namespace}/${ref.name} has no key ${ref.key}`,
    };
  }
  return { type, status: 'True', reason: 'SecretFound', message: `key ${ref.key} of Secret ${ref.name}` };
}

async function providerEvents(
  ctx: ReconcileContext,
  object: CustomObject,
  previous: Condition[] | undefined,
  next: ConditionInput[],
) {
  const credentialsFailed = next.find((c) => c.type === 'CredentialsResolved');
  if (credentialsFailed && becameFalse(previous, next, 'CredentialsResolved')) {
    await ctx.events.record(object, 'Warning', credentialsFailed.reason, credentialsFailed.message);
  }
  if (becameTrue(previous, next, 'Refusing')) {
    await ctx.events.record(
      object,
      'Warning',
      'ProviderRefusing',
      next.find((c) => c.type === 'Refusing')!.message,
    );
  }
  if (becameTrue(previous, next, 'Ready')) {
    await ctx.events.record(
      object,
      'Normal',
      'InForce',
      'the limits are in force on every quota-service replica',
    );
  }
}

function enqueueDependents(ctx: ReconcileContext, providerId: string): void {
  for (const budget of ctx.budgets.list()) {
    const ns = budget.metadata.namespace;
    const spec = budget.spec as {
      providerRef?: { name: string; namespace?: string };
      fallbacks?: Array<{ providerRef: { name: string; namespace?: string } }>;
    };
    const refs = [spec.providerRef, ...(spec.fallbacks ?? []).map((f) => f.providerRef)];
    if (refs.some((r) => r && `${r.namespace ?? ns}/${r.name}` === providerId)) {
      ctx.enqueue(keyOf('LLMBudget', ns, budget.metadata.name));
    }
  }
}
