// ServiceAccount identity on the real API server: projected-style tokens (TokenRequest with the
// tokenlease audience) verified by TokenReview as the controller user under deploy/rbac's rules,
// and budgets granted only to the ServiceAccounts they select.
import { AuthenticationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildBudgetSet } from '../../common/budgets/load-budgets.ts';
import { budgetSchema, providerSchema } from '../../common/budgets/types.ts';
import { PermissionDeniedError } from '../../common/errors/errors.ts';
import { authorizeBudget, budgetsFor, TokenVerifier } from '../../controller/k8s/identity/index.ts';
import { admin, createNamespace, grantControllerRbac, uniqueName } from './controller-harness.ts';
import { kubeConfigFor } from './kube-config.ts';
import { controlPlane } from './test-context.ts';

const team = uniqueName('search');
const other = uniqueName('other');
const core = () => admin().makeApiClient(CoreV1Api);

async function tokenFor(namespace: string, serviceAccount: string, audience = 'tokenlease'): Promise<string> {
  const answer = await core().createNamespacedServiceAccountToken({
    name: serviceAccount,
    namespace,
    body: { spec: { audiences: [audience], expirationSeconds: 600 } },
  });
  return answer.status?.token ?? '';
}

const budgets = buildBudgetSet([
  providerSchema.parse({
    apiVersion: 'tokenlease.io/v1alpha1',
    kind: 'LLMProvider',
    metadata: { name: 'openai', namespace: team },
    spec: { api: 'openai', baseURL: 'https://api.openai.com/v1' },
  }),
  budgetSchema.parse({
    apiVersion: 'tokenlease.io/v1alpha1',
    kind: 'LLMBudget',
    metadata: { name: 'search', namespace: team },
    spec: { providerRef: { name: 'openai' }, workloads: { serviceAccounts: ['search-api'] } },
  }),
]);

beforeAll(async () => {
  for (const namespace of [team, other]) {
    await createNamespace(namespace);
    for (const name of ['search-api', 'intruder']) {
      await core().createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
    }
  }
  await grantControllerRbac(team);
});

function verifier() {
  // The quota service runs under the controller's RBAC (tokenreviews: create), not as an admin.
  const api = kubeConfigFor(controlPlane(), 'controller').makeApiClient(AuthenticationV1Api);
  return new TokenVerifier({ api, cacheTtlMs: 60_000 });
}

describe('ServiceAccount identity', () => {
  it('verifies a token with the tokenlease audience, once per token', async () => {
    const v = verifier();
    const token = await tokenFor(team, 'search-api');
    expect(await v.verify(token)).toEqual({ namespace: team, serviceAccount: 'search-api' });
    expect(await v.verify(token)).toEqual({ namespace: team, serviceAccount: 'search-api' });
    expect(v.reviews).toBe(1);
  });

  it('refuses tokens for another audience and tokens that are not tokens', async () => {
    const v = verifier();
    await expect(
      v.verify(await tokenFor(team, 'search-api', 'https://kubernetes.default.svc')),
    ).rejects.toThrow(PermissionDeniedError);
    await expect(v.verify('not-a-token')).rejects.toThrow(PermissionDeniedError);
  });

  it("grants only budgets that select the ServiceAccount: no pod spends another tenant's budget", async () => {
    const v = verifier();
    const allowed = await v.verify(await tokenFor(team, 'search-api'));
    expect(() => authorizeBudget(budgets, `${team}/search`, allowed)).not.toThrow();
    expect(budgetsFor(budgets, allowed)).toEqual([`${team}/search`]);

    const intruder = await v.verify(await tokenFor(team, 'intruder'));
    expect(() => authorizeBudget(budgets, `${team}/search`, intruder)).toThrow(PermissionDeniedError);
    expect(budgetsFor(budgets, intruder)).toEqual([]);

    // Same ServiceAccount name, another namespace: still not selected.
    const lookalike = await v.verify(await tokenFor(other, 'search-api'));
    expect(lookalike).toEqual({ namespace: other, serviceAccount: 'search-api' });
    expect(() => authorizeBudget(budgets, `${team}/search`, lookalike)).toThrow(
      /is not selected by LLMBudget/,
    );
  });
});
