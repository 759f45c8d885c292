/**
 * The one I/O step of checking a Kubernetes identity: a TokenReview against
 * the cluster's API server, for the Castellan audience. The API server checks
 * signature, expiry, audience and that the ServiceAccount (and the pod or
 * Secret the token is bound to) still exists, so a deleted pod's or a
 * revoked ServiceAccount's token is refused here.
 */
import * as k8s from '@kubernetes/client-node';
import { describeError } from '../../common/logger.ts';
import type { ReviewedToken } from './decision.ts';

export type TokenReviewer = (token: string) => Promise<ReviewedToken>;

export function kubeTokenReviewer(kc: k8s.KubeConfig, audience: string): TokenReviewer {
  const api = kc.makeApiClient(k8s.AuthenticationV1Api);
  return async (token) => {
    try {
      const res = await api.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [audience] } } });
      const s = res.status;
      return {
        authenticated: s?.authenticated === true,
        ...(s?.user?.username === undefined ? {} : { username: s.user.username }),
        ...(s?.error === undefined ? {} : { error: s.error }),
        ...(s?.audiences === undefined ? {} : { audiences: s.audiences }),
      };
    } catch (err) {
      return { authenticated: false, error: `TokenReview failed: ${describeError(err)}` };
    }
  };
}
