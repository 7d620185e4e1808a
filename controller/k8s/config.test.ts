import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../common/errors/errors.ts';
import { loadConfig, type ControllerConfig } from './config.ts';

const load = (argv: string[], env: Record<string, string> = {}) => loadConfig(argv, env) as ControllerConfig;

function refusal(argv: string[], env: Record<string, string> = {}): ConfigError {
  try {
    loadConfig(argv, env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('accepted');
}

describe('controller loadConfig', () => {
  it('has the cert-manager leader-election defaults and a webhook on 9443', () => {
    const config = load([]);
    expect(config.leaderElection).toEqual({
      name: 'tokenlease-controller',
      leaseDurationMs: 60_000,
      renewDeadlineMs: 40_000,
      retryPeriodMs: 15_000,
    });
    expect(config.namespace).toBe('tokenlease-system');
    expect(config.webhook).toMatchObject({
      enabled: true,
      listen: { host: '0.0.0.0', port: 9443 },
      quotaAddress: 'tokenlease-quota.tokenlease-system:7070',
    });
  });

  it('takes flags over environment variables, and an empty variable as unset', () => {
    const config = load(['--status-interval', '2s'], {
      TOKENLEASE_STATUS_INTERVAL: '5s',
      TOKENLEASE_RESYNC: '',
      TOKENLEASE_WEBHOOK_LISTEN: 'off',
    });
    expect(config.statusIntervalMs).toBe(2_000);
    expect(config.resyncMs).toBe(15_000);
    expect(config.webhook).toEqual({ enabled: false });
  });

  it('refuses a bad value naming where it came from', () => {
    expect(refusal(['--leader-elect-lease-duration', 'soon']).field).toBe('--leader-elect-lease-duration');
    expect(refusal([], { TOKENLEASE_REDIS_URL: 'http://x' }).field).toBe('TOKENLEASE_REDIS_URL');
    expect(refusal(['--workers', '0']).field).toBe('--workers');
    expect(refusal(['--webhook-listen', 'nowhere']).field).toBe('--webhook-listen');
    expect(refusal(['--namespace', 'Bad_NS']).field).toBe('--namespace');
    expect(refusal(['--no-such-flag']).field).toBe('--no-such-flag');
  });

  it('refuses leader-election timings that cannot work', () => {
    expect(refusal(['--leader-elect-renew-deadline', '60s']).message).toMatch(
      /renew-deadline: must be shorter than --leader-elect-lease-duration/,
    );
    expect(refusal([], { TOKENLEASE_LEADER_ELECT_RETRY_PERIOD: '40s' }).field).toBe(
      'TOKENLEASE_LEADER_ELECT_RETRY_PERIOD',
    );
  });
});
