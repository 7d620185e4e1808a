// The refusal a test expects from the API server: @kubernetes/client-node 2 rejects with an
// ApiException whose body is the raw JSON text of a meta/v1 Status.
import { ApiException, type V1Status } from '@kubernetes/client-node';

export interface ApiRefusal {
  code: number;
  status: V1Status;
}

/** Awaits a call that must fail with an HTTP error from the API server and returns it. */
export async function apiRefusal(call: Promise<unknown>): Promise<ApiRefusal> {
  try {
    await call;
  } catch (err) {
    if (!(err instanceof ApiException)) throw err;
    const body: unknown = err.body;
    const status = (
      typeof body === 'string' && body.startsWith('{') ? JSON.parse(body) : { message: String(body) }
    ) as V1Status;
    return { code: err.code, status };
  }
  throw new Error('the API server accepted a request that it should have refused');
}
