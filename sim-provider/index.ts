/** The simulated LLM provider's public surface. */
export { startSimProvider, type SimLedgerView, type SimProvider, type SimProviderOptions } from './server.ts';
export { runSimProvider } from './cli.ts';
export {
  FAULTS,
  loadConfig,
  parseInlineLimits,
  simSettingsSchema,
  type Fault,
  type SimSettings,
  type SimSettingsInput,
} from './config.ts';
export { REFUSAL_CLASSES, type RefusalClass } from './flavors.ts';
export type { LedgerEntry, LedgerOutcome, LedgerSummary, LimitSummary } from './ledger.ts';
