/**
 * metav1.Condition lists: one entry per type; lastTransitionTime changes only when the status
 * flips; observedGeneration says which spec the condition speaks about.
 */
import type { Condition } from './crd/status-types.ts';

export interface ConditionInput {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

export function setConditions(
  previous: readonly Condition[] | undefined,
  next: readonly ConditionInput[],
  generation: number | undefined,
  now: Date,
): Condition[] {
  return next.map((input) => {
    const old = previous?.find((c) => c.type === input.type);
    return {
      ...input,
      ...(generation === undefined ? {} : { observedGeneration: generation }),
      lastTransitionTime:
        old && old.status === input.status
          ? old.lastTransitionTime
          : now.toISOString().replace(/\.\d+Z$/, 'Z'),
    };
  });
}

export function conditionStatus(
  conditions: readonly Condition[] | undefined,
  type: string,
): string | undefined {
  return conditions?.find((c) => c.type === type)?.status;
}

/** The types whose status became True in this pass (for Events on transitions). */
export function becameTrue(
  previous: readonly Condition[] | undefined,
  next: readonly ConditionInput[],
  type: string,
): boolean {
  return conditionStatus(previous, type) !== 'True' && next.find((c) => c.type === type)?.status === 'True';
}

export function becameFalse(
  previous: readonly Condition[] | undefined,
  next: readonly ConditionInput[],
  type: string,
): boolean {
  return conditionStatus(previous, type) !== 'False' && next.find((c) => c.type === type)?.status === 'False';
}
