/**
 * The status the controller writes on LLMProvider and LLMBudget. Like the specs (common/budgets/types.ts)
 * these zod schemas are the one definition: the CRDs' status schemas are generated from them.
 */
import { z } from 'zod';
import { DIMENSIONS } from '../../../common/budgets/types.ts';

/** metav1.Condition. lastTransitionTime changes only when `status` flips. */
export const conditionSchema = z
  .object({
    type: z
      .string()
      .min(1)
      .max(316)
      .regex(/^([a-z0-9.-]+\/)?[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/),
    status: z.enum(['True', 'False', 'Unknown']),
    observedGeneration: z.number().int().min(0).optional(),
    lastTransitionTime: z.iso.datetime({ offset: true }),
    reason: z
      .string()
      .min(1)
      .max(1024)
      .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/),
    message: z.string().max(32768),
  })
  .strict();
export type Condition = z.infer<typeof conditionSchema>;

/** One limit (a provider's limit or a budget's cap) with what is in use of it right now. */
export const limitUsageSchema = z
  .object({
    dimension: z.enum(DIMENSIONS),
    window: z.string().max(32).optional(),
    model: z.string().max(200).optional(),
    /** As declared. */
    limit: z.number().int().min(0),
    /** After upstream refusals shrank it (additive increase, multiplicative decrease). */
    effectiveLimit: z.number().int().min(0),
    used: z.number().int().min(0),
  })
  .strict();
export type LimitUsageStatus = z.infer<typeof limitUsageSchema>;

export const refusalsSchema = z
  .object({
    total: z.number().int().min(0),
    /** Upstream refusals by class (rate, concurrency, window, balance, overloaded, ...). */
    byClass: z.record(z.string(), z.number().int().min(0)).optional(),
  })
  .strict();

/** Strings for `kubectl get` printer columns, which cannot compute. */
export const summarySchema = z
  .object({
    /** The declared limits, e.g. `5 concurrency, 600 requests/5h`. */
    limits: z.string().max(1024),
    /** The busiest limit, e.g. `42% totalTokens/1m`. */
    use: z.string().max(256),
  })
  .strict();

const commonStatus = {
  observedGeneration: z.number().int().min(0).optional(),
  conditions: z.array(conditionSchema).max(16).optional(),
  inFlight: z.number().int().min(0).optional(),
  upstreamRefusals: refusalsSchema.optional(),
  summary: summarySchema.optional(),
};

export const providerStatusSchema = z
  .object({
    ...commonStatus,
    limits: z.array(limitUsageSchema).max(64).optional(),
    waiters: z.number().int().min(0).optional(),
    /** Set while a retry-after or window reset keeps the provider closed cluster-wide. */
    closedUntil: z.iso.datetime({ offset: true }).optional(),
    closedReason: z.string().max(1024).optional(),
  })
  .strict();
export type ProviderStatus = z.infer<typeof providerStatusSchema>;

export const budgetStatusSchema = z
  .object({
    ...commonStatus,
    /** `namespace/name` of the provider the budget draws from. */
    provider: z.string().max(317).optional(),
    /** The budget's caps and the provider's limits it draws from. */
    limits: z.array(limitUsageSchema).max(128).optional(),
    waiters: z.number().int().min(0).optional(),
    granted: z.number().int().min(0).optional(),
    rejected: z.number().int().min(0).optional(),
  })
  .strict();
export type BudgetStatus = z.infer<typeof budgetStatusSchema>;
