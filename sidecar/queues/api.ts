/**
 * Request bodies of the queue API (SPEC §2.3), validated with zod at the
 * boundary: wrong types, out-of-range numbers and malformed entries are 400s
 * naming the field.
 */
import { z } from 'zod';
import { batchProblem } from './logic.ts';
import { LIMITS } from './spec.ts';

const attributes = z
  .record(z.string().min(1).max(256), z.string())
  .refine((a) => Object.keys(a).length <= LIMITS.maxAttributes, { message: `at most ${LIMITS.maxAttributes} attributes` });

const sendFields = {
  body: z.string({ error: 'body must be a string' }),
  replicas: z.number().int().min(1).max(LIMITS.maxReplicas).optional(),
  delaySeconds: z.number().int().min(0).max(LIMITS.maxDelayMs / 1000).optional(),
  deduplicationId: z.string().min(1).max(LIMITS.maxDedupIdChars).optional(),
  attributes: attributes.optional(),
};

export const sendSchema = z.object(sendFields);

export const receiveSchema = z.object({
  maxMessages: z.number().int().min(1).max(LIMITS.maxReceiveMessages).default(1),
  waitSeconds: z.number().int().min(0).max(LIMITS.maxWaitSeconds).default(0),
  visibilityTimeoutSeconds: z.number().int().min(0).max(LIMITS.maxVisibilitySeconds).optional(),
});

export const visibilitySchema = z.object({
  receiptHandle: z.string().min(1),
  visibilityTimeoutSeconds: z.number().int().min(0).max(LIMITS.maxVisibilitySeconds),
});

const batch = <T extends z.ZodObject>(entry: T) =>
  z.object({ entries: z.array(entry) }).superRefine((b, ctx) => {
    const problem = batchProblem(b.entries as { id: string }[]);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', path: ['entries'], message: problem });
  });

export const batchSendSchema = batch(z.object({ id: z.string(), ...sendFields }));
export const batchDeleteSchema = batch(z.object({ id: z.string(), receiptHandle: z.string().min(1) }));

export type SendBody = z.infer<typeof sendSchema>;
