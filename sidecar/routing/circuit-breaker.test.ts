import { describe, expect, it } from 'vitest';
import { breakerSettings, CircuitBreaker, type BreakerState, type Health } from './circuit-breaker.ts';

function breaker(overrides: Partial<ReturnType<typeof breakerSettings>> = {}) {
  const clock = { now: 1_000_000 };
  const changes: BreakerState[] = [];
  const settings = {
    ...breakerSettings({
      consecutiveFailures: 3,
      minCalls: 10,
      failureRate: 0.5,
      window: '10s',
      coolDown: '5s',
    }),
    ...overrides,
  };
  const subject = new CircuitBreaker(
    settings,
    () => clock.now,
    (state) => changes.push(state),
  );
  const call = (health: Health) => {
    const permit = subject.permit();
    if (permit === undefined) return 'refused';
    permit.report(health);
    return permit.probe ? 'probe' : 'passed';
  };
  return { clock, changes, subject, call };
}

describe('CircuitBreaker', () => {
  it('opens after N failures in a row; a success in between resets the count', () => {
    const { subject, call, changes } = breaker();
    call('failure');
    call('failure');
    call('success');
    call('failure');
    call('failure');
    expect(subject.state).toBe('closed');
    call('failure');
    expect(subject.state).toBe('open');
    expect(subject.permit()).toBeUndefined();
    expect(changes).toEqual(['open']);
  });

  it('neutral verdicts (rate refusals, cancelled calls) neither count nor reset', () => {
    const { subject, call } = breaker();
    call('failure');
    call('failure');
    for (let i = 0; i < 20; i++) call('neutral');
    expect(subject.state).toBe('closed');
    call('failure');
    expect(subject.state).toBe('open');
  });

  it('opens on a failure rate over the window once it holds minCalls, forgetting old calls', () => {
    const { subject, call, clock } = breaker({ consecutiveFailures: 1000 });
    // Alternating: 50 % failures, but never 3 in a row; 9 calls are below minCalls.
    for (let i = 0; i < 9; i++) call(i % 2 === 0 ? 'success' : 'failure');
    expect(subject.state).toBe('closed');
    // Ten seconds later the old calls have left the window: one more failure is 1 of 1.
    clock.now += 11_000;
    call('failure');
    expect(subject.state).toBe('closed');
    for (let i = 0; i < 8; i++) call(i % 2 === 0 ? 'success' : 'failure');
    expect(subject.state).toBe('closed');
    call('failure'); // 10 calls, 6 failures
    expect(subject.state).toBe('open');
  });

  it('half-opens after the cool-down with exactly one probe; its success closes', () => {
    const { subject, call, clock, changes } = breaker();
    for (let i = 0; i < 3; i++) call('failure');
    expect(subject.openUntilMs).toBe(clock.now + 5_000);
    clock.now += 4_999;
    expect(subject.permit()).toBeUndefined();
    clock.now += 1;
    expect(subject.state).toBe('halfOpen');
    const probe = subject.permit()!;
    expect(probe.probe).toBe(true);
    // While the probe is out, everyone else is refused.
    expect(subject.permit()).toBeUndefined();
    probe.report('success');
    probe.report('failure'); // a second report does nothing
    expect(subject.state).toBe('closed');
    expect(call('failure')).toBe('passed');
    expect(subject.state).toBe('closed');
    expect(changes).toEqual(['open', 'halfOpen', 'closed']);
  });

  it('a failed probe opens again for another cool-down; a neutral probe lets the next call probe', () => {
    const { subject, call, clock } = breaker();
    for (let i = 0; i < 3; i++) call('failure');
    clock.now += 5_000;
    expect(call('neutral')).toBe('probe');
    expect(subject.state).toBe('halfOpen');
    expect(call('failure')).toBe('probe');
    expect(subject.state).toBe('open');
    expect(subject.openUntilMs).toBe(clock.now + 5_000);
    clock.now += 5_000;
    expect(call('success')).toBe('probe');
    expect(subject.state).toBe('closed');
  });

  it('verdicts of calls started before the breaker opened do not move it', () => {
    const { subject, call, clock } = breaker();
    const early = subject.permit()!;
    for (let i = 0; i < 3; i++) call('failure');
    early.report('success');
    expect(subject.state).toBe('open');
    clock.now += 5_000;
    const probe = subject.permit()!;
    const late = early; // reported already; reporting again is a no-op
    late.report('success');
    expect(subject.state).toBe('halfOpen');
    probe.report('success');
    expect(subject.state).toBe('closed');
  });

  it('disabled: always lets calls through', () => {
    const { subject, call } = breaker({ enabled: false });
    for (let i = 0; i < 10; i++) expect(call('failure')).toBe('passed');
    expect(subject.state).toBe('closed');
  });
});
