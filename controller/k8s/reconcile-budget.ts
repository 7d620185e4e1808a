/**
 * LLMBudget: validate, resolve the provider references (a provider in another namespace must
 * allow the budget's namespace in spec.allowedNamespaces), add the finalizer before the budget
 * first reaches the store, put Ready budgets into the store, report use in status, and on deletion
 * remove the budget from the store, forget its counters and drop the finalizer.
 * Conditions: Accepted, ResolvedRefs, ProviderReady, Exhausted, Ready.
 */
import { budgetSchema, objectId, type LLMBudget, type LLMProvider } from '../../common/budgets/types.ts';
import { becameTrue, setConditions, type ConditionInput } from './conditions.ts';
import type { Condition } from './crd/status-types.ts';
import type { ReconcileContext, ReconcileResult } from './reconcile-context.ts';
import { FINALIZER, forStore, type CustomObject } from './resources.ts';
import {
  budgetLimits,
  exhausted,
  limitStatus,
  limitsSummary,
  refusalTotals,
  useSummary,
} from './usage-status.ts';

/** May a budget in `namespace` reference `provider`? Its own namespace always; others when listed. */
export function mayReference(provider: Pick<LLMProvider, 'metadata' | 'spec'>, namespace: string): boolean {
  if (provider.metadata.namespace === namespace) return true;
  const allowed = provider.spec.allowedNamespaces ?? [];
  return allowed.includes('*') || allowed.includes(namespace);
}

export async function reconcileBudget(
  ctx: ReconcileContext,
  namespace: string,
  name: string,
): Promise<ReconcileResult> {
  const id = `${namespace}/${name}`;
  let object = ctx.budgets.get(name, namespace);
  if (!object) {
    if (ctx.ready.budgets.delete(id)) await ctx.publish();
    return {};
  }
  if (object.metadata.deletionTimestamp) {
    await finalize(ctx, id, object);
    return {};
  }

  const conditions: ConditionInput[] = [];
  const parsed = budgetSchema.safeParse(forStore(object));
  let ready = false;
  let providerId: string | undefined;
  if (!parsed.success) {
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
    const budget = parsed.data;
    providerId = objectId(budget.spec.providerRef, namespace);
    conditions.push({ type: 'Accepted', status: 'True', reason: 'Valid', message: 'the spec is valid' });
    conditions.push(resolveRefs(ctx, budget));
    const providerReady = ctx.ready.providers.has(providerId);
    conditions.push(
      providerReady
        ? {
            type: 'ProviderReady',
            status: 'True',
            reason: 'ProviderReady',
            message: `LLMProvider ${providerId} is Ready`,
          }
        : {
            type: 'ProviderReady',
            status: 'False',
            reason: 'ProviderNotReady',
            message: `LLMProvider ${providerId} is not Ready`,
          },
    );
    ready = conditions.every((c) => c.status === 'True');
    if (ready && !object.metadata.finalizers?.includes(FINALIZER)) {
      // Before the budget first reaches the store, so its deletion always gets to clean up.
      object = await ctx.setFinalizers(object, [...(object.metadata.finalizers ?? []), FINALIZER]);
    }
    if (ready) ctx.ready.budgets.set(id, budget);
  }
  if (!ready) ctx.ready.budgets.delete(id);
  await ctx.publish();

  const previous = object.status?.conditions as Condition[] | undefined;
  const providerUsage = ready && providerId ? await ctx.usage(providerId) : undefined;
  const own = providerUsage?.budgets.find((b) => b.budget === id);
  const limits = providerUsage ? budgetLimits(providerUsage, id).map(limitStatus) : [];
  if (providerUsage) {
    const full = exhausted(limits);
    conditions.push(
      full
        ? {
            type: 'Exhausted',
            status: 'True',
            reason: 'LimitReached',
            message: `${full.dimension}${full.window ? ` per ${full.window}` : ''}${full.model ? ` for ${full.model}` : ''}: ${full.used} of ${full.effectiveLimit} used`,
          }
        : { type: 'Exhausted', status: 'False', reason: 'WithinLimits', message: 'every limit has room' },
    );
  }
  const failing = conditions.find((c) => c.status !== 'True' && c.type !== 'Exhausted');
  conditions.push(
    failing
      ? { type: 'Ready', status: 'False', reason: failing.reason, message: failing.message }
      : {
          type: 'Ready',
          status: 'True',
          reason: 'InForce',
          message: 'the budget is in force on every quota-service replica',
        },
  );

  const status = {
    observedGeneration: object.metadata.generation,
    conditions: setConditions(previous, conditions, object.metadata.generation, ctx.now()),
    ...(providerId ? { provider: providerId } : {}),
    limits,
    inFlight: own?.inFlight ?? 0,
    waiters: own?.waiters ?? 0,
    granted: own?.granted ?? 0,
    rejected: own?.rejected ?? 0,
    upstreamRefusals: refusalTotals(own ? [own] : []),
    summary: { limits: limitsSummary(limits), use: useSummary(limits) },
  };
  const written = await ctx.status.write(object, status);
  if (written.written && becameTrue(previous, conditions, 'Exhausted')) {
    await ctx.events.record(
      object,
      'Warning',
      'BudgetExhausted',
      conditions.find((c) => c.type === 'Exhausted')!.message,
    );
  }
  if (written.written && failing && previous?.find((c) => c.type === 'Ready')?.reason !== failing.reason) {
    await ctx.events.record(object, 'Warning', failing.reason, failing.message);
  }
  return {
    requeueAfterMs: ready ? Math.min(ctx.resyncMs, written.retryAfterMs ?? Infinity) : written.retryAfterMs,
  };
}

function resolveRefs(ctx: ReconcileContext, budget: LLMBudget): ConditionInput {
  const namespace = budget.metadata.namespace;
  const refs = [
    { field: 'spec.providerRef', ref: budget.spec.providerRef },
    ...(budget.spec.fallbacks ?? []).map((f, i) => ({
      field: `spec.fallbacks[${i}].providerRef`,
      ref: f.providerRef,
    })),
  ];
  for (const { field, ref } of refs) {
    const refNamespace = ref.namespace ?? namespace;
    const provider = ctx.providers.get(ref.name, refNamespace);
    if (!provider) {
      return {
        type: 'ResolvedRefs',
        status: 'False',
        reason: 'ProviderNotFound',
        message: `${field}: LLMProvider ${refNamespace}/${ref.name} does not exist`,
      };
    }
    const spec = provider.spec as LLMProvider['spec'];
    if (!mayReference({ metadata: { ...provider.metadata }, spec }, namespace)) {
      return {
        type: 'ResolvedRefs',
        status: 'False',
        reason: 'RefNotPermitted',
        message: `${field}: LLMProvider ${refNamespace}/${ref.name} does not list namespace ${namespace} in spec.allowedNamespaces`,
      };
    }
  }
  return {
    type: 'ResolvedRefs',
    status: 'True',
    reason: 'Resolved',
    message: 'every provider reference resolves and is permitted',
  };
}

async function finalize(ctx: ReconcileContext, id: string, object: CustomObject): Promise<void> {
  if (!object.metadata.finalizers?.includes(FINALIZER)) return;
  // Out of the store first, so no replica grants from it while its counters go.
  ctx.ready.budgets.delete(id);
  await ctx.publish();
  const parsed = budgetSchema.safeParse(forStore(object));
  if (parsed.success) await ctx.forgetBudget(parsed.data);
  await ctx.setFinalizers(
    object,
    object.metadata.finalizers.filter((f) => f !== FINALIZER),
  );
  ctx.status.forget(object.metadata.uid);
}
