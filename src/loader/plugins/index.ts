// Every plugin's loader module, by the name the daemon spawns a child for.
import { bashLoader } from './bash';
import { netLoader } from './net';
import type { LoaderPlugin } from './types';

export const LOADER_PLUGINS: Record<string, LoaderPlugin> = {
  net: netLoader,
  bash: bashLoader,
};
