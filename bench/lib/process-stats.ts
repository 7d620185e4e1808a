/** Resident memory and CPU time of a process, read from /proc (Linux). */
import { readFileSync } from 'node:fs';

export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

const TICKS_PER_SECOND = 100;

/** User + system CPU seconds used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** The whole machine's CPU ticks so far (/proc/stat), and those the hypervisor took (steal). */
export function machineTicks(): { total: number; steal: number } {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/);
  // user nice system idle iowait irq softirq steal (guest time is counted in user already).
  const ticks = cpu.slice(1, 9).map(Number);
  return { total: ticks.reduce((sum, t) => sum + t, 0), steal: ticks[7] ?? 0 };
}

/**
 * The share (%) of the machine's CPU time the hypervisor gave to other guests between two
 * readings: while it does, this machine's processes stall whatever they run, and a latency tail
 * measured then is the host's as much as the code's.
 */
export function stealPercent(before: { total: number; steal: number }, after = machineTicks()): number {
  const total = after.total - before.total;
  return total > 0 ? (100 * (after.steal - before.steal)) / total : 0;
}
