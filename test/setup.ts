// Runs in every test file: no kernel state a test created outlives its file.
import { afterAll } from 'vitest';
import { removeTempPinRoots } from './helpers/daemon';

afterAll(() => removeTempPinRoots());
