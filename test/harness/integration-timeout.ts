/**
 * Integration tests talk to real processes (kube-apiserver through kubectl, NATS
 * clusters, sidecars) on a machine that may be loaded: a test without its own
 * timeout gets 60 s instead of jest's 5 s, so a slow but correct answer is not a
 * failure. Tests that need longer still say so themselves.
 */
import { jest } from '@jest/globals';

jest.setTimeout(60_000);
