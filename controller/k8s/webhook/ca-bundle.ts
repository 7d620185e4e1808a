/** Keeps the caBundle of tokenlease's MutatingWebhookConfiguration equal to the serving CA. */
import type { AdmissionregistrationV1Api } from '@kubernetes/client-node';

/** Patches every webhook of `name` whose caBundle differs; returns how many it changed. */
export async function ensureCaBundle(
  api: AdmissionregistrationV1Api,
  name: string,
  caPem: string,
): Promise<number> {
  const config = await api.readMutatingWebhookConfiguration({ name });
  const bundle = Buffer.from(caPem).toString('base64');
  const ops = (config.webhooks ?? []).flatMap((webhook, index) =>
    webhook.clientConfig.caBundle === bundle
      ? []
      : [{ op: 'replace', path: `/webhooks/${index}/clientConfig/caBundle`, value: bundle }],
  );
  if (ops.length === 0) return 0;
  await api.patchMutatingWebhookConfiguration({
    name,
    body: [
      { op: 'test', path: '/metadata/resourceVersion', value: config.metadata?.resourceVersion },
      ...ops,
    ],
  });
  return ops.length;
}
