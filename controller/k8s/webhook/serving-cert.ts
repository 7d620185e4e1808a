/**
 * The webhook's serving certificate, managed by the controller itself (cert-manager optional):
 * a self-signed CA and a serving certificate for the webhook Service's DNS names, kept in one
 * Secret in the controller's namespace so every replica serves the same one, and renewed (CA and
 * all) when it nears expiry or no longer covers the names. ECDSA P-256 via @peculiar/x509 on
 * Node's WebCrypto (node:crypto parses certificates but cannot issue them).
 */
// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { ApiException, type CoreV1Api, type V1Secret } from '@kubernetes/client-node';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type KeyPair = webcrypto.CryptoKeyPair;

export interface ServingCert {
  caPem: string;
  certPem: string;
  keyPem: string;
}

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

export interface CertOptions {
  /** DNS names (and IP addresses) the webhook is reached by. */
  names: string[];
  validityDays?: number;
  now?: Date;
}

function generalName(name: string): x509.JsonGeneralName {
  return /^[\d.]+$|:/.test(name) ? { type: 'ip', value: name } : { type: 'dns', value: name };
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}

export async function issueServingCert(options: CertOptions): Promise<ServingCert> {
  const now = options.now ?? new Date();
  const notBefore = new Date(now.getTime() - 5 * 60_000);
  const notAfter = new Date(now.getTime() + (options.validityDays ?? 365) * DAY_MS);
  const subtle = webcrypto.subtle;
  const caKeys = (await subtle.generateKey(ALG, true, ['sign', 'verify'])) as KeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=tokenlease-webhook-ca',
    keys: caKeys,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const keys = (await subtle.generateKey(ALG, true, ['sign', 'verify'])) as KeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${options.names[0] ?? 'tokenlease-webhook'}`,
    issuer: ca.subject,
    publicKey: keys.publicKey,
    signingKey: caKeys.privateKey,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(options.names.map(generalName)),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  // The CA key is thrown away: renewal issues a new CA and the bundle follows.
  return {
    caPem: ca.toString('pem') + '\n',
    certPem: cert.toString('pem') + '\n',
    keyPem: pem('PRIVATE KEY', await subtle.exportKey('pkcs8', keys.privateKey)),
  };
}

/** Whether `cert` is still good at `now` for `names`, with `renewBeforeMs` to spare. */
export function stillGood(
  cert: ServingCert,
  names: readonly string[],
  now: Date,
  renewBeforeMs: number,
): boolean {
  try {
    const leaf = new NodeX509(cert.certPem);
    const ca = new NodeX509(cert.caPem);
    if (!leaf.verify(ca.publicKey)) return false;
    if (new Date(leaf.validTo).getTime() - renewBeforeMs < now.getTime()) return false;
    const san = leaf.subjectAltName ?? '';
    return names.every((n) => san.includes(/^[\d.]+$|:/.test(n) ? `IP Address:${n}` : `DNS:${n}`));
  } catch {
    return false;
  }
}

function fromSecret(secret: V1Secret): ServingCert | undefined {
  const read = (key: string) =>
    secret.data?.[key] ? Buffer.from(secret.data[key], 'base64').toString('utf8') : '';
  const cert = { caPem: read('ca.crt'), certPem: read('tls.crt'), keyPem: read('tls.key') };
  return cert.caPem && cert.certPem && cert.keyPem ? cert : undefined;
}

function secretBody(name: string, cert: ServingCert, resourceVersion?: string): V1Secret {
  const b64 = (text: string) => Buffer.from(text).toString('base64');
  return {
    metadata: {
      name,
      labels: { 'app.kubernetes.io/part-of': 'tokenlease' },
      ...(resourceVersion ? { resourceVersion } : {}),
    },
    type: 'kubernetes.io/tls',
    data: { 'ca.crt': b64(cert.caPem), 'tls.crt': b64(cert.certPem), 'tls.key': b64(cert.keyPem) },
  };
}

/**
 * The serving certificate from the Secret, issuing (or renewing) it first when needed. Replicas
 * racing to create or update it settle on whichever wrote first (409 -> read again).
 */
export async function ensureServingCert(options: {
  core: CoreV1Api;
  namespace: string;
  secretName: string;
  names: string[];
  renewBeforeMs?: number;
  now?: () => Date;
}): Promise<ServingCert> {
  const now = options.now ?? (() => new Date());
  const renewBeforeMs = options.renewBeforeMs ?? 30 * DAY_MS;
  const { core, namespace, secretName: name } = options;
  for (let attempt = 0; attempt < 5; attempt++) {
    let existing: V1Secret | undefined;
    try {
      existing = await core.readNamespacedSecret({ name, namespace });
    } catch (error) {
      if (!(error instanceof ApiException && error.code === 404)) throw error;
    }
    const current = existing && fromSecret(existing);
    if (current && stillGood(current, options.names, now(), renewBeforeMs)) return current;
    const issued = await issueServingCert({ names: options.names, now: now() });
    try {
      if (existing) {
        await core.replaceNamespacedSecret({
          name,
          namespace,
          body: secretBody(name, issued, existing.metadata?.resourceVersion),
        });
      } else {
        await core.createNamespacedSecret({ namespace, body: secretBody(name, issued) });
      }
      return issued;
    } catch (error) {
      if (!(error instanceof ApiException && error.code === 409)) throw error;
    }
  }
  throw new Error(`could not settle the webhook certificate in Secret ${namespace}/${name}`);
}
