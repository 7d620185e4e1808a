/**
 * What the sidecar injector does to a pod annotated `tokenlease.io/inject: "true"`: works out the
 * budget (annotation `tokenlease.io/budget`, else the one LLMBudget of the pod's namespace that
 * selects its ServiceAccount), then adds
 *   - the sidecar as a native sidecar (an init container with restartPolicy Always: it starts
 *     before the app and stops after it), configured through TOKENLEASE_* variables;
 *   - the provider key Secrets as a projected volume mounted into the sidecar only, at the
 *     sidecar's secrets dir (`<secret name>/<key>`);
 *   - the budget's providers as YAML in a pod annotation, mounted through the downward API;
 *   - a projected ServiceAccount token with the quota service's audience, sidecar only;
 *   - OPENAI_BASE_URL and ANTHROPIC_BASE_URL in every app container, pointing at the sidecar.
 * Pure: the webhook server turns the result into a JSON Patch.
 */
import type { V1Container, V1EnvVar, V1Pod, V1Volume } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import type { BudgetSet } from '../../../common/budgets/load-budgets.ts';
import { objectId, type LLMBudget } from '../../../common/budgets/types.ts';
import { selects } from '../identity/authorize.ts';

export const INJECT_ANNOTATION = 'tokenlease.io/inject';
export const BUDGET_ANNOTATION = 'tokenlease.io/budget';
export const INJECTED_ANNOTATION = 'tokenlease.io/injected';
export const BUDGETS_ANNOTATION = 'tokenlease.io/budgets';
export const SIDECAR_NAME = 'tokenlease-sidecar';
/**
 * V8 flags the sidecar runs with, set as NODE_OPTIONS in its container (idle RSS target 80 MB;
 * see SIDECAR_RESOURCES for the limit): the process cannot set them itself, as v8.setFlagsFromString after start-up
 * leaves the heap's sizes as they were. A 2 MB semi-space caps the young generation, which V8
 * otherwise grows to tens of MB: the proxy keeps little of what a call allocates, and start-up
 * alone grew it by ~8 MB of RSS. 1 MB saved another ~1.4 MB idle but collected so often that
 * the sidecar spent 8 % more CPU per call (1.69 vs 1.56 ms at 450 calls/s, 8 rounds side by
 * side; 4 MB: 1.47 ms, 78.9 MB idle). bench:memory and bench:sidecar start the sidecar with
 * exactly these options.
 */
export const SIDECAR_NODE_OPTIONS = '--max-semi-space-size=2';
/**
 * The sidecar container's resources. bench:memory measures ~75 MB idle but ~145 MB at the peak of
 * 32 calls in flight (V8's compiled code and undici's WebAssembly parser stay resident once
 * warmed up), so a 128Mi limit would OOM-kill a busy pod's sidecar: the request is what it idles
 * at after traffic, the limit leaves room for bursts and the optional in-memory response cache.
 */
export const SIDECAR_RESOURCES = { requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '256Mi' } };

export interface InjectionConfig {
  image: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** Where the sidecar listens inside the pod. */
  port: number;
  /** host:port of the quota service (gRPC). */
  quotaAddress: string;
  /** Audience of the projected ServiceAccount token. */
  audience: string;
  tokenExpirationSeconds: number;
}

export type InjectionResult =
  | { kind: 'skip'; reason: string }
  | { kind: 'deny'; message: string }
  | { kind: 'inject'; pod: V1Pod; budget: string };

const SECRETS_DIR = '/var/run/tokenlease/secrets';
const TOKEN_DIR = '/var/run/tokenlease/token';
const CONFIG_DIR = '/etc/tokenlease';

export function wantsInjection(pod: V1Pod): boolean {
  return pod.metadata?.annotations?.[INJECT_ANNOTATION] === 'true';
}

function chooseBudget(pod: V1Pod, namespace: string, budgets: BudgetSet): LLMBudget | string {
  const serviceAccount = pod.spec?.serviceAccountName || 'default';
  const named = pod.metadata?.annotations?.[BUDGET_ANNOTATION];
  if (named) {
    const budget = budgets.budgets.get(named.includes('/') ? named : `${namespace}/${named}`);
    if (!budget) return `${BUDGET_ANNOTATION}: no Ready LLMBudget ${named} in namespace ${namespace}`;
    if (!selects(budget, { namespace, serviceAccount })) {
      return `${BUDGET_ANNOTATION}: LLMBudget ${objectId(budget.metadata)} does not select ServiceAccount ${serviceAccount}`;
    }
    return budget;
  }
  const candidates = [...budgets.budgets.values()].filter((b) => selects(b, { namespace, serviceAccount }));
  if (candidates.length === 1) return candidates[0]!;
  return candidates.length === 0
    ? `no Ready LLMBudget in namespace ${namespace} selects ServiceAccount ${serviceAccount}`
    : `several LLMBudgets select ServiceAccount ${serviceAccount} (${candidates.map((b) => b.metadata.name).join(', ')}): name one in annotation ${BUDGET_ANNOTATION}`;
}

export function injectSidecar(
  pod: V1Pod,
  namespace: string,
  budgets: BudgetSet,
  config: InjectionConfig,
): InjectionResult {
  if (!wantsInjection(pod)) return { kind: 'skip', reason: `not annotated ${INJECT_ANNOTATION}: "true"` };
  if (
    pod.metadata?.annotations?.[INJECTED_ANNOTATION] ||
    pod.spec?.initContainers?.some((c) => c.name === SIDECAR_NAME)
  ) {
    return { kind: 'skip', reason: 'already injected' };
  }
  const chosen = chooseBudget(pod, namespace, budgets);
  // An annotated pod without a usable budget is refused with the reason, rather than started
  // with no way to reach its provider.
  if (typeof chosen === 'string') return { kind: 'deny', message: chosen };
  const budgetId = objectId(chosen.metadata);
  const providerIds = [
    objectId(chosen.spec.providerRef, chosen.metadata.namespace),
    ...(chosen.spec.fallbacks ?? []).map((f) => objectId(f.providerRef, chosen.metadata.namespace)),
  ];
  const providers = providerIds.flatMap((id) => budgets.providers.get(id) ?? []);

  // Key Secrets: a projected volume can only name Secrets of the pod's own namespace.
  const secretSources = [
    ...new Map(
      providers.flatMap((p) => {
        const ref = p.spec.credentials?.secretRef;
        return ref ? [[`${ref.name}/${ref.key}`, { name: ref.name, key: ref.key }] as const] : [];
      }),
    ).values(),
  ].map((ref) => ({ secret: { name: ref.name, items: [{ key: ref.key, path: `${ref.name}/${ref.key}` }] } }));

  const budgetsYaml = [...providers, chosen]
    .map((o) =>
      stringify({
        apiVersion: o.apiVersion,
        kind: o.kind,
        metadata: { name: o.metadata.name, namespace: o.metadata.namespace },
        spec: o.spec,
      }),
    )
    .join('---\n');

  const sidecar: V1Container = {
    name: SIDECAR_NAME,
    image: config.image,
    ...(config.imagePullPolicy ? { imagePullPolicy: config.imagePullPolicy } : {}),
    args: ['sidecar'],
    restartPolicy: 'Always',
    env: [
      { name: 'NODE_OPTIONS', value: SIDECAR_NODE_OPTIONS },
      { name: 'TOKENLEASE_LISTEN', value: `127.0.0.1:${config.port}` },
      { name: 'TOKENLEASE_BUDGET', value: budgetId },
      { name: 'TOKENLEASE_BUDGETS', value: `${CONFIG_DIR}/budgets.yaml` },
      { name: 'TOKENLEASE_QUOTA', value: config.quotaAddress },
      { name: 'TOKENLEASE_SECRETS_DIR', value: SECRETS_DIR },
      { name: 'TOKENLEASE_IDENTITY_TOKEN_FILE', value: `${TOKEN_DIR}/token` },
    ],
    ports: [{ name: 'tokenlease', containerPort: config.port, protocol: 'TCP' }],
    volumeMounts: [
      ...(secretSources.length ? [{ name: 'tokenlease-keys', mountPath: SECRETS_DIR, readOnly: true }] : []),
      { name: 'tokenlease-token', mountPath: TOKEN_DIR, readOnly: true },
      { name: 'tokenlease-config', mountPath: CONFIG_DIR, readOnly: true },
    ],
    securityContext: {
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    resources: SIDECAR_RESOURCES,
  };

  const baseUrls: V1EnvVar[] = [
    { name: 'OPENAI_BASE_URL', value: `http://127.0.0.1:${config.port}/v1` },
    { name: 'ANTHROPIC_BASE_URL', value: `http://127.0.0.1:${config.port}` },
  ];
  const containers = (pod.spec?.containers ?? []).map((c) => ({
    ...c,
    // The sidecar's address wins over one the app set: calls must go through the sidecar.
    env: [...(c.env ?? []).filter((e) => !baseUrls.some((b) => b.name === e.name)), ...baseUrls],
  }));

  const volumes: V1Volume[] = [
    ...(secretSources.length
      ? [{ name: 'tokenlease-keys', projected: { sources: secretSources, defaultMode: 0o400 } }]
      : []),
    {
      name: 'tokenlease-token',
      projected: {
        sources: [
          {
            serviceAccountToken: {
              audience: config.audience,
              expirationSeconds: config.tokenExpirationSeconds,
              path: 'token',
            },
          },
        ],
      },
    },
    {
      name: 'tokenlease-config',
      downwardAPI: {
        items: [
          { path: 'budgets.yaml', fieldRef: { fieldPath: `metadata.annotations['${BUDGETS_ANNOTATION}']` } },
        ],
      },
    },
  ];

  return {
    kind: 'inject',
    budget: budgetId,
    pod: {
      ...pod,
      metadata: {
        ...pod.metadata,
        annotations: {
          ...pod.metadata?.annotations,
          [INJECTED_ANNOTATION]: budgetId,
          [BUDGETS_ANNOTATION]: budgetsYaml,
        },
      },
      spec: {
        ...pod.spec!,
        initContainers: [...(pod.spec?.initContainers ?? []), sidecar],
        containers,
        volumes: [...(pod.spec?.volumes ?? []), ...volumes],
      },
    },
  };
}

/** JSON Patch from `before` to `after` for the parts injection changes. */
export function injectionPatch(before: V1Pod, after: V1Pod): object[] {
  const set = (path: string, had: unknown, value: unknown) => ({
    op: had === undefined ? 'add' : 'replace',
    path,
    value,
  });
  return [
    set('/metadata/annotations', before.metadata?.annotations, after.metadata?.annotations),
    set('/spec/initContainers', before.spec?.initContainers, after.spec?.initContainers),
    set('/spec/containers', before.spec?.containers, after.spec?.containers),
    set('/spec/volumes', before.spec?.volumes, after.spec?.volumes),
  ];
}
