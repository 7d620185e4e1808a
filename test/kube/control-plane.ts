// A real Kubernetes control plane for tests: etcd + kube-apiserver started the way
// controller-runtime's envtest starts them, on loopback ports, with RBAC on and static bearer tokens.
// There is no controller-manager, so: no garbage collection, no namespace deletion, no default
// ServiceAccount (the ServiceAccount admission plugin is off, as in envtest, so pods need none).
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest, type ClientRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeConfig } from '@kubernetes/client-node';
import { freePorts } from '../support/free-ports.ts';
import { KUBE_USERS, kubeConfigFor, type ControlPlaneConnection, type KubeUser } from './kube-config.ts';

export class ControlPlaneError extends Error {
  override name = 'ControlPlaneError';
}

export interface ControlPlaneOptions {
  kubeApiserverPath: string;
  etcdPath: string;
  /** Extra kube-apiserver flags, appended last (a later flag wins). */
  extraApiserverArgs?: readonly string[];
  /** How long etcd and then the API server each get to become ready. */
  startTimeoutMs?: number;
}

export interface ControlPlane extends ControlPlaneConnection {
  kubeconfigFor(user?: KubeUser): KubeConfig;
  /** Where etcd's and kube-apiserver's output goes (removed by stop()). */
  logDir: string;
  /** Kills both processes and removes the temporary directories. Safe to call twice. */
  stop(): Promise<void>;
}

const SERVICE_CLUSTER_IP_RANGE = '10.0.0.0/24';
const PORT_RETRIES = 3;

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(options);
    } catch (err) {
      // Free ports are picked by binding port 0 and closing it, so another process can take one
      // before etcd or the API server binds it; only that failure is worth another try.
      if (!(err instanceof PortTakenError) || attempt >= PORT_RETRIES) throw err;
    }
  }
}

class PortTakenError extends ControlPlaneError {
  override name = 'PortTakenError';
}

async function startOnce(options: ControlPlaneOptions): Promise<ControlPlane> {
  const timeoutMs = options.startTimeoutMs ?? 90_000;
  const dir = await mkdtemp(join(tmpdir(), 'tokenlease-kube-'));
  const processes: Child[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // API server first: it would otherwise log etcd connection errors while shutting down.
    for (const child of processes.slice().reverse()) await child.stop();
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const [etcdClientPort, etcdPeerPort, securePort] = await freePorts(3);
    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
    const etcd = new Child('etcd', options.etcdPath, join(dir, 'etcd.log'), [
      '--name=tokenlease-test',
      `--data-dir=${join(dir, 'etcd-data')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=tokenlease-test=${peerUrl}`,
      // Tests never need the data to survive a crash; fsync dominates etcd's write latency.
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    processes.push(etcd);
    await waitUntil(etcd, timeoutMs, async () =>
      (await httpGet(`${etcdUrl}/health`)).body.includes('"health":"true"'),
    );

    const certDir = join(dir, 'certs');
    const tokens = Object.fromEntries(
      Object.keys(KUBE_USERS).map((user) => [user, randomBytes(24).toString('hex')]),
    ) as Record<KubeUser, string>;
    const tokenFile = join(dir, 'tokens.csv');
    await writeFile(tokenFile, tokenFileContent(tokens), { mode: 0o600 });
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const saPublicKey = join(dir, 'sa.pub');
    const saPrivateKey = join(dir, 'sa.key');
    await writeFile(saPublicKey, publicKey.export({ type: 'spki', format: 'pem' }));
    await writeFile(saPrivateKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });

    const server = `https://127.0.0.1:${securePort}`;
    const apiserver = new Child(
      'kube-apiserver',
      options.kubeApiserverPath,
      join(dir, 'kube-apiserver.log'),
      [
        `--etcd-servers=${etcdUrl}`,
        // The API server writes a self-signed serving certificate and its CA here on first start.
        `--cert-dir=${certDir}`,
        `--secure-port=${securePort}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        // Nothing would serve the `kubernetes` Service's endpoints, and a loopback endpoint is invalid.
        '--endpoint-reconciler-type=none',
        `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
        '--authorization-mode=RBAC',
        `--token-auth-file=${tokenFile}`,
        `--service-account-issuer=${server}`,
        `--service-account-key-file=${saPublicKey}`,
        `--service-account-signing-key-file=${saPrivateKey}`,
        '--enable-admission-plugins=NamespaceLifecycle,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy',
        // As in envtest: with it on, every pod would need a `default` ServiceAccount that only
        // the (absent) controller-manager creates.
        '--disable-admission-plugins=ServiceAccount',
        '--allow-privileged=true',
        ...(options.extraApiserverArgs ?? []),
      ],
    );
    processes.push(apiserver);

    let caData = '';
    await waitUntil(apiserver, timeoutMs, async () => {
      // The certificate file exists a moment before the port listens; the readyz check below
      // proves the last certificate in it (the CA) verifies the server.
      if (!caData)
        caData = lastPemCertificate(await readFile(join(certDir, 'apiserver.crt'), 'utf8').catch(() => ''));
      if (!caData) return false;
      const res = await httpGet(`${server}/readyz`, { ca: caData, token: tokens.admin });
      return res.status === 200;
    });

    const connection: ControlPlaneConnection = {
      server,
      caData,
      tokens,
      kubeconfigPath: join(dir, 'admin.kubeconfig'),
      // The API server's own self-signed pair: its SANs include 127.0.0.1.
      loopbackTls: {
        cert: await readFile(join(certDir, 'apiserver.crt'), 'utf8'),
        key: await readFile(join(certDir, 'apiserver.key'), 'utf8'),
      },
    };
    await writeFile(connection.kubeconfigPath, kubeConfigFor(connection, 'admin').exportConfig(), {
      mode: 0o600,
    });
    return {
      ...connection,
      logDir: dir,
      kubeconfigFor: (user: KubeUser = 'admin') => kubeConfigFor(connection, user),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** `token,user,uid,"group1,group2"` per line, the format of --token-auth-file. */
function tokenFileContent(tokens: Record<KubeUser, string>): string {
  return Object.entries(KUBE_USERS)
    .map(([user, groups]) => {
      const line = `${tokens[user as KubeUser]},${user},${user}`;
      return groups.length > 0 ? `${line},"${groups.join(',')}"` : line;
    })
    .join('\n');
}

function lastPemCertificate(pem: string): string {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  return blocks?.length ? `${blocks[blocks.length - 1]}\n` : '';
}

function httpGet(
  url: string,
  options: { ca?: string; token?: string } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const headers = options.token ? { authorization: `Bearer ${options.token}` } : {};
    const get: ClientRequest = url.startsWith('https:')
      ? httpsRequest(url, { ca: options.ca, headers, timeout: 2_000 })
      : httpRequest(url, { headers, timeout: 2_000 });
    get.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    // Not up yet (refused, reset, timed out): the caller polls again.
    get.on('error', () => resolve({ status: 0, body: '' }));
    get.on('timeout', () => get.destroy());
    get.end();
  });
}

async function waitUntil(child: Child, timeoutMs: number, ready: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exited) {
      const log = child.logTail();
      const message = `${child.name} exited with ${child.exitDescription} before it was ready:\n${log}`;
      throw /address already in use/.test(log) ? new PortTakenError(message) : new ControlPlaneError(message);
    }
    if (await ready()) return;
    await sleep(250);
  }
  throw new ControlPlaneError(`${child.name} was not ready after ${timeoutMs} ms:\n${child.logTail()}`);
}

// Children still running when the test process exits without stop() (a crash, Ctrl-C) would
// otherwise outlive it and keep their ports.
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const proc of running) proc.kill('SIGKILL');
});

class Child {
  readonly name: string;
  private readonly logPath: string;
  private readonly proc: ChildProcess;
  private readonly exitPromise: Promise<void>;
  exited = false;
  exitDescription = '';

  constructor(name: string, path: string, logPath: string, args: readonly string[]) {
    this.name = name;
    this.logPath = logPath;
    const log = openSync(logPath, 'a');
    try {
      this.proc = spawn(path, args, { stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    running.add(this.proc);
    this.exitPromise = new Promise((resolve) => {
      const done = (description: string): void => {
        this.exited = true;
        this.exitDescription = description;
        running.delete(this.proc);
        resolve();
      };
      this.proc.once('exit', (code, signal) => done(signal ? `signal ${signal}` : `code ${code}`));
      this.proc.once('error', (err) => done(`error ${err.message}`));
    });
  }

  logTail(lines = 40): string {
    try {
      return readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    this.proc.kill('SIGTERM');
    const killed = await Promise.race([this.exitPromise.then(() => true), sleep(10_000).then(() => false)]);
    if (!killed) {
      this.proc.kill('SIGKILL');
      await this.exitPromise;
    }
  }
}
