/**
 * The demand of a fidelity run: N sidecars with Zipf-skewed request rates (the busiest pod asks
 * for many times what the quietest does), each belonging to one of the budgets, arriving as
 * independent Poisson processes. Bodies are chat completions of varied prompt length and
 * max_tokens, so token counts and reservations differ from call to call.
 */

export interface SidecarDemand {
  index: number;
  budget: string;
  /** Requests per second this sidecar's app sends. */
  ratePerSec: number;
}

export interface Workload {
  sidecars: SidecarDemand[];
  totalRatePerSec: number;
}

/** Sidecar i asks for a rate proportional to 1/(i+1); budgets are dealt round-robin. */
export function skewedWorkload(count: number, budgets: string[], totalRatePerSec: number): Workload {
  const raw = Array.from({ length: count }, (_, i) => 1 / (i + 1));
  const sum = raw.reduce((a, b) => a + b, 0);
  return {
    sidecars: raw.map((weight, index) => ({
      index,
      budget: budgets[index % budgets.length]!,
      ratePerSec: (totalRatePerSec * weight) / sum,
    })),
    totalRatePerSec,
  };
}

/** Each budget's share of the demand, in percent. */
export function demandSharesPct(workload: Workload): Record<string, number> {
  const shares: Record<string, number> = {};
  for (const sidecar of workload.sidecars) {
    shares[sidecar.budget] =
      (shares[sidecar.budget] ?? 0) + (100 * sidecar.ratePerSec) / workload.totalRatePerSec;
  }
  return shares;
}

/** A deterministic generator, so every strategy faces the same sequence of arrivals and bodies. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const WORDS =
  'the quota lease grants one request its tokens and a slot while the provider answers every call in time'.split(
    ' ',
  );

/** A chat completion with about `words` words of prompt and the given max_tokens. */
export function chatBody(random: () => number, model: string): Record<string, unknown> {
  const words = 40 + Math.floor(random() * 300);
  const text = Array.from({ length: words }, () => WORDS[Math.floor(random() * WORDS.length)]).join(' ');
  return {
    model,
    messages: [{ role: 'user', content: text }],
    max_tokens: 64 + Math.floor(random() * 192),
  };
}

export interface Arrival {
  sidecar: SidecarDemand;
  /** Offset from the start of the run, ms. */
  atMs: number;
  body: Record<string, unknown>;
}

/** Every arrival of a run of `durationMs`, in time order. */
export function arrivals(workload: Workload, durationMs: number, seed: number, model: string): Arrival[] {
  const random = mulberry32(seed);
  const list: Arrival[] = [];
  for (const sidecar of workload.sidecars) {
    let at = 0;
    for (;;) {
      at += (-Math.log(1 - random()) / sidecar.ratePerSec) * 1000;
      if (at >= durationMs) break;
      list.push({ sidecar, atMs: at, body: chatBody(random, model) });
    }
  }
  return list.sort((a, b) => a.atMs - b.atMs);
}
