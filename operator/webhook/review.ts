/**
 * admission.k8s.io/v1 AdmissionReview in and out (pure): the request is
 * validated with zod at the boundary; the answer carries the request's uid,
 * and either a base64 JSON patch, a refusal (HTTP-like code and message, which
 * the API server shows to the pod's creator), or a plain "allowed".
 */
import type { V1Pod } from '@kubernetes/client-node';
import { z } from 'zod';
import type { InjectionDecision } from './inject.ts';

const zContainer = z.looseObject({ name: z.string().min(1) });

export const admissionReviewSchema = z.object({
  apiVersion: z.literal('admission.k8s.io/v1'),
  kind: z.literal('AdmissionReview'),
  request: z.looseObject({
    uid: z.string().min(1),
    kind: z.looseObject({ group: z.string(), version: z.string(), kind: z.string() }),
    operation: z.string().min(1),
    namespace: z.string().optional(),
    name: z.string().optional(),
    object: z
      .looseObject({
        metadata: z
          .looseObject({
            name: z.string().optional(),
            generateName: z.string().optional(),
            annotations: z.record(z.string(), z.string()).nullish(),
            labels: z.record(z.string(), z.string()).nullish(),
          })
          .optional(),
        spec: z
          .looseObject({
            containers: z.array(zContainer),
            initContainers: z.array(zContainer).nullish(),
            volumes: z.array(z.looseObject({ name: z.string() })).nullish(),
          })
          .optional(),
      })
      .nullish(),
  }),
});

export type AdmissionReview = z.infer<typeof admissionReviewSchema>;

export interface AdmissionResponse {
  apiVersion: 'admission.k8s.io/v1';
  kind: 'AdmissionReview';
  response: {
    uid: string;
    allowed: boolean;
    patchType?: 'JSONPatch';
    patch?: string;
    status?: { code: number; reason: string; message: string };
  };
}

/** Whether this review is one the webhook acts on: a Pod CREATE. */
export function isPodCreate(review: AdmissionReview): boolean {
  const { kind, operation } = review.request;
  return kind.group === '' && kind.kind === 'Pod' && operation === 'CREATE' && review.request.object !== null && review.request.object !== undefined;
}

/** The pod of a review, with absent (null) lists as undefined. */
export function podOf(review: AdmissionReview): V1Pod {
  const pod = review.request.object as unknown as V1Pod;
  const meta = pod.metadata ?? {};
  const spec = pod.spec;
  return {
    ...pod,
    metadata: { ...meta, annotations: meta.annotations ?? undefined, labels: meta.labels ?? undefined },
    spec: spec === undefined ? undefined : { ...spec, initContainers: spec.initContainers ?? undefined, volumes: spec.volumes ?? undefined },
  };
}

export function admissionResponse(uid: string, decision: InjectionDecision | { decision: 'allow'; reason: string }): AdmissionResponse {
  const base = { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' } as const;
  if (decision.decision === 'patch') {
    return { ...base, response: { uid, allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(decision.patch)).toString('base64') } };
  }
  if (decision.decision === 'deny') return { ...base, response: { uid, allowed: false, status: { code: 400, reason: 'BadRequest', message: decision.message } } };
  return { ...base, response: { uid, allowed: true } };
}
