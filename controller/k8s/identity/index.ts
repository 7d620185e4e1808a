/** ServiceAccount identity for the quota service: verify a sidecar's token, then authorize its budget. */
export {
  DEFAULT_AUDIENCE,
  TokenVerifier,
  type TokenVerifierOptions,
  type WorkloadIdentity,
} from './token-verifier.ts';
export { authorizeBudget, budgetsFor, selects } from './authorize.ts';
