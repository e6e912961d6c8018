// Every plugin the daemon can run, by its DataKit name.
import type { Plugin } from '../config/types';
import { BashPlugin } from './bash';
import { NetPlugin } from './net';
import type { CollectorPlugin, PluginContext } from './types';

export const PLUGIN_FACTORIES: Partial<Record<Plugin, (ctx: PluginContext) => CollectorPlugin>> = {
  'ebpf-net': (ctx) => new NetPlugin(ctx),
  'ebpf-bash': (ctx) => new BashPlugin(ctx),
};
