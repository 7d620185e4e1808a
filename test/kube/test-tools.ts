// Finds the control-plane binaries: from TOKENLEASE_ETCD / TOKENLEASE_KUBE_APISERVER when set,
// otherwise from scripts/build-test-tools.sh, which builds them on first use (minutes) and
// afterwards only prints where they are.
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../../scripts/build-test-tools.sh', import.meta.url));

export interface KubeTools {
  etcd: string;
  kubeApiserver: string;
  kubectl?: string;
}

export async function findKubeTools(env: NodeJS.ProcessEnv = process.env): Promise<KubeTools> {
  const fromEnv = { etcd: env.TOKENLEASE_ETCD, kubeApiserver: env.TOKENLEASE_KUBE_APISERVER };
  if (fromEnv.etcd && fromEnv.kubeApiserver) {
    for (const path of [fromEnv.etcd, fromEnv.kubeApiserver]) accessSync(path, constants.X_OK);
    return { etcd: fromEnv.etcd, kubeApiserver: fromEnv.kubeApiserver, kubectl: env.TOKENLEASE_KUBECTL };
  }
  const exports = await buildTools(['etcd', 'kubernetes']);
  const etcd = exports.get('TOKENLEASE_ETCD');
  const kubeApiserver = exports.get('TOKENLEASE_KUBE_APISERVER');
  if (!etcd || !kubeApiserver) throw new Error(`${SCRIPT} printed no path for etcd or kube-apiserver`);
  return { etcd, kubeApiserver, kubectl: exports.get('TOKENLEASE_KUBECTL') };
}

/** Runs the build script for the given tools and returns the variables of its `export` lines. */
export function buildTools(tools: readonly string[]): Promise<Map<string, string>> {
  return new Promise((resolve, reject) => {
    // Progress (stderr) goes straight to the terminal: a first build takes minutes.
    const child = spawn('bash', [SCRIPT, '--print-env', ...tools], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (out += chunk));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`${SCRIPT} ${tools.join(' ')} failed with code ${code}`));
      const vars = new Map<string, string>();
      for (const match of out.matchAll(/^export (\w+)=(.*)$/gm)) vars.set(match[1]!, match[2]!);
      resolve(vars);
    });
  });
}
