/**
 * SQS errors as SQS clients parse them. Each error has the name the JSON
 * protocol puts in `__type` (`com.amazonaws.sqs#<name>`), the code the query
 * protocol puts in `<Code>` and the JSON protocol repeats in the
 * `x-amzn-query-error: <code>;Sender|Receiver` header (awsQueryCompatible),
 * and an HTTP status. `fromCastellan` maps the native queue errors (SPEC §2.3
 * codes) onto them, so no native code ever reaches an SQS client.
 */
import { CastellanError } from '../../common/errors.ts';

export class SqsError extends Error {
  readonly type: string;
  readonly code: string;
  readonly status: number;
  readonly fault: 'Sender' | 'Receiver';

  constructor(type: string, message: string, opts: { code?: string; status?: number; fault?: 'Sender' | 'Receiver'; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'SqsError';
    this.type = type;
    this.code = opts.code ?? type;
    this.status = opts.status ?? 400;
    this.fault = opts.fault ?? (this.status >= 500 ? 'Receiver' : 'Sender');
  }
}

/** The SQS error codes Castellan answers, with their query-protocol codes where they differ. */
export const Sqs = {
  nonExistentQueue: (m = 'The specified queue does not exist.') => new SqsError('QueueDoesNotExist', m, { code: 'AWS.SimpleQueueService.NonExistentQueue' }),
  receiptHandleIsInvalid: (m: string) => new SqsError('ReceiptHandleIsInvalid', m),
  messageNotInflight: (m = 'The message referred to isn\u2019t in flight.') => new SqsError('MessageNotInflight', m, { code: 'AWS.SimpleQueueService.MessageNotInflight' }),
  tooManyEntries: (n: number) =>
    new SqsError('TooManyEntriesInBatchRequest', `Maximum number of entries per request are 10. You have sent ${n}.`, { code: 'AWS.SimpleQueueService.TooManyEntriesInBatchRequest' }),
  emptyBatch: (what: string) =>
    new SqsError('EmptyBatchRequest', `There should be at least one ${what} in the request.`, { code: 'AWS.SimpleQueueService.EmptyBatchRequest' }),
  idsNotDistinct: (id: string) => new SqsError('BatchEntryIdsNotDistinct', `Id ${id} repeated.`, { code: 'AWS.SimpleQueueService.BatchEntryIdsNotDistinct' }),
  invalidBatchEntryId: () =>
    new SqsError('InvalidBatchEntryId', 'A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.', {
      code: 'AWS.SimpleQueueService.InvalidBatchEntryId',
    }),
  batchTooLong: (max: number) =>
    new SqsError('BatchRequestTooLong', `Batch requests cannot be longer than ${max} bytes.`, { code: 'AWS.SimpleQueueService.BatchRequestTooLong' }),
  invalidAttributeName: (m: string) => new SqsError('InvalidAttributeName', m),
  invalidAttributeValue: (m: string) => new SqsError('InvalidAttributeValue', m),
  invalidParameterValue: (m: string) => new SqsError('InvalidParameterValue', m),
  invalidMessageContents: (m: string) => new SqsError('InvalidMessageContents', m),
  missingParameter: (name: string) => new SqsError('MissingParameter', `The request must contain the parameter ${name}.`),
  invalidAction: (action: string) => new SqsError('InvalidAction', `The action ${action} is not valid for this endpoint.`),
  invalidAddress: (m: string) => new SqsError('InvalidAddress', m, { code: 'InvalidAddress', status: 404 }),
  unsupported: (m: string) => new SqsError('UnsupportedOperation', m, { code: 'AWS.SimpleQueueService.UnsupportedOperation' }),
  queueNameExists: (name: string) =>
    new SqsError('QueueNameExists', `A queue already exists with the same name and a different value for attribute(s) of ${name}.`, { code: 'QueueAlreadyExists' }),
  accessDenied: (m: string) => new SqsError('AccessDenied', m, { status: 403, code: 'AccessDenied' }),
  malformed: (m: string) => new SqsError('MalformedQueryString', m),
  unavailable: (m: string, cause?: unknown) => new SqsError('ServiceUnavailable', m, { status: 503, fault: 'Receiver', cause }),
  internal: (m: string, cause?: unknown) => new SqsError('InternalFailure', m, { code: 'InternalFailure', status: 500, fault: 'Receiver', cause }),
} as const;

/** A native queue error (or anything thrown) as the SQS error a client expects. */
export function toSqsError(err: unknown): SqsError {
  if (err instanceof SqsError) return err;
  if (err instanceof CastellanError) {
    switch (err.code) {
      case 'QUEUE_NOT_FOUND':
        return Sqs.nonExistentQueue();
      case 'INVALID_RECEIPT_HANDLE':
        return Sqs.receiptHandleIsInvalid(`The input receipt handle is invalid. ${err.message}`);
      case 'MESSAGE_NOT_IN_FLIGHT':
        return Sqs.messageNotInflight(err.message);
      case 'MESSAGE_NOT_FOUND':
      case 'RECEIPT_HANDLE_EXPIRED':
        return Sqs.invalidParameterValue(`Value for parameter ReceiptHandle is invalid. Reason: ${err.message}`);
      case 'PAYLOAD_TOO_LARGE':
      case 'INVALID_REPLICAS':
        return Sqs.invalidParameterValue(err.message);
      default:
        if (err.status >= 500 || err.retryable) return Sqs.unavailable(err.message, err);
        if (err.status >= 400 && err.status < 500) return Sqs.invalidParameterValue(err.message);
        return Sqs.internal(err.message, err);
    }
  }
  return Sqs.internal('Internal error in the Castellan sidecar.', err);
}
