import type { Profiler } from 'node:inspector';

export type CpuProfile = Profiler.Profile;
export type CallFrame = Profiler.ProfileNode['callFrame'];

/** One call path of the merged tree. Times are in microseconds. */
export interface MergedNode {
  readonly callFrame: CallFrame;
  /** Samples with this frame on top of the stack. */
  hitCount: number;
  /** Time those samples stand for. */
  selfTime: number;
  /** Source line (1-based, as V8 reports it) → samples on it. */
  readonly positionTicks: Map<number, number>;
  readonly children: Map<string, MergedNode>;
}

export interface MergedProfile {
  readonly root: MergedNode;
  /** Profiles merged so far. */
  runs: number;
  samples: number;
  /** Sum of all sample durations. */
  sampledTime: number;
  /** `startTime` of the first profile merged, so exports keep V8's clock. */
  startTime: number | undefined;
}

/** A function of the table: all call paths ending in the same frame, summed. */
export interface FunctionRow {
  readonly key: string;
  readonly callFrame: CallFrame;
  selfTime: number;
  /** Time with the function anywhere on the stack, each sample counted once even under recursion. */
  totalTime: number;
  hitCount: number;
}

const ROOT_FRAME: CallFrame = { functionName: '(root)', scriptId: '0', url: '', lineNumber: -1, columnNumber: -1 };

/** The call-frame identity used for merging; script ids are left out because they are per run. */
export function frameKey(frame: CallFrame): string {
  return `${frame.functionName}\n${frame.url}\n${frame.lineNumber}\n${frame.columnNumber}`;
}

function newNode(callFrame: CallFrame): MergedNode {
  return { callFrame, hitCount: 0, selfTime: 0, positionTicks: new Map(), children: new Map() };
}

export function emptyMergedProfile(): MergedProfile {
  return { root: newNode(ROOT_FRAME), runs: 0, samples: 0, sampledTime: 0, startTime: undefined };
}

/**
 * Samples and time per node id. A sample lasts until the next one (the last one until
 * `endTime`), as Chrome DevTools reckons it; V8 occasionally reports a negative delta.
 */
function sampleTimes(profile: CpuProfile): { hits: Map<number, number>; time: Map<number, number> } {
  const hits = new Map<number, number>();
  const time = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  if (samples.length === 0) {
    // Without samples only hit counts remain: spread the profile's duration over them.
    const total = profile.nodes.reduce((sum, node) => sum + (node.hitCount ?? 0), 0);
    const perHit = total > 0 ? Math.max(0, profile.endTime - profile.startTime) / total : 0;
    for (const node of profile.nodes) {
      if (!node.hitCount) continue;
      hits.set(node.id, node.hitCount);
      time.set(node.id, node.hitCount * perHit);
    }
    return { hits, time };
  }
  let at = profile.startTime + (deltas[0] ?? 0);
  for (let i = 0; i < samples.length; i++) {
    const next = i + 1 < samples.length ? at + (deltas[i + 1] ?? 0) : Math.max(at, profile.endTime);
    const id = samples[i];
    hits.set(id, (hits.get(id) ?? 0) + 1);
    time.set(id, (time.get(id) ?? 0) + Math.max(0, next - at));
    at = next;
  }
  return { hits, time };
}

/**
 * Adds a V8 profile to `into`, merging call paths by frame identity. Mutates and returns `into`.
 * Call paths through an `exclude`d frame are dropped with their samples.
 */
export function mergeProfile(into: MergedProfile, profile: CpuProfile, exclude?: (frame: CallFrame) => boolean): MergedProfile {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const childIds = new Set(profile.nodes.flatMap((node) => node.children ?? []));
  const sourceRoot = profile.nodes.find((node) => !childIds.has(node.id));
  const { hits, time } = sampleTimes(profile);
  into.runs++;
  into.startTime ??= profile.startTime;
  if (!sourceRoot) return into;
  const visited = new Set<number>();
  const stack: Array<[Profiler.ProfileNode, MergedNode]> = [[sourceRoot, into.root]];
  while (stack.length > 0) {
    const [source, target] = stack.pop()!;
    if (visited.has(source.id)) continue;
    visited.add(source.id);
    const hitCount = hits.get(source.id) ?? 0;
    const selfTime = time.get(source.id) ?? 0;
    target.hitCount += hitCount;
    target.selfTime += selfTime;
    into.samples += hitCount;
    into.sampledTime += selfTime;
    for (const tick of source.positionTicks ?? []) {
      target.positionTicks.set(tick.line, (target.positionTicks.get(tick.line) ?? 0) + tick.ticks);
    }
    for (const childId of source.children ?? []) {
      const child = byId.get(childId);
      if (!child || exclude?.(child.callFrame)) continue;
      const key = frameKey(child.callFrame);
      let merged = target.children.get(key);
      if (!merged) target.children.set(key, (merged = newNode(child.callFrame)));
      stack.push([child, merged]);
    }
  }
  if (exclude) pruneEmpty(into.root);
  return into;
}

/** Drops call paths without any time, which excluded frames leave behind. */
function pruneEmpty(root: MergedNode): void {
  const totals = nodeTotals(root);
  for (const { node } of preOrder(root)) {
    for (const [key, child] of node.children) if (totals.get(child) === 0 && child.hitCount === 0) node.children.delete(key);
  }
}

/** Nodes in pre-order (parents before children), with their depth. */
export function preOrder(root: MergedNode): Array<{ node: MergedNode; depth: number }> {
  const out: Array<{ node: MergedNode; depth: number }> = [];
  const stack = [{ node: root, depth: 0 }];
  while (stack.length > 0) {
    const entry = stack.pop()!;
    out.push(entry);
    const children = [...entry.node.children.values()];
    for (let i = children.length - 1; i >= 0; i--) stack.push({ node: children[i], depth: entry.depth + 1 });
  }
  return out;
}

/** Self plus descendants' time of every node. */
export function nodeTotals(root: MergedNode): Map<MergedNode, number> {
  const totals = new Map<MergedNode, number>();
  const order = preOrder(root);
  for (let i = order.length - 1; i >= 0; i--) {
    const { node } = order[i];
    let total = node.selfTime;
    for (const child of node.children.values()) total += totals.get(child) ?? 0;
    totals.set(node, total);
  }
  return totals;
}

/**
 * One row per function. A function's total time adds a call path only where it is the
 * outermost occurrence of that function, so recursive calls are not counted twice.
 */
export function functionTable(merged: MergedProfile): FunctionRow[] {
  const totals = nodeTotals(merged.root);
  const rows = new Map<string, FunctionRow>();
  const onPath = new Map<string, number>();
  type Step = { node: MergedNode; leave: boolean };
  const stack: Step[] = [...merged.root.children.values()].map((node) => ({ node, leave: false }));
  while (stack.length > 0) {
    const { node, leave } = stack.pop()!;
    const key = frameKey(node.callFrame);
    if (leave) {
      onPath.set(key, onPath.get(key)! - 1);
      continue;
    }
    let row = rows.get(key);
    if (!row) rows.set(key, (row = { key, callFrame: node.callFrame, selfTime: 0, totalTime: 0, hitCount: 0 }));
    row.selfTime += node.selfTime;
    row.hitCount += node.hitCount;
    const depth = onPath.get(key) ?? 0;
    if (depth === 0) row.totalTime += totals.get(node) ?? 0;
    onPath.set(key, depth + 1);
    stack.push({ node, leave: true });
    for (const child of node.children.values()) stack.push({ node: child, leave: false });
  }
  return [...rows.values()];
}

/** Splits `total` microseconds into `count` whole deltas that add up to it. */
function spread(total: number, count: number): number[] {
  const whole = Math.max(0, Math.round(total));
  const base = Math.floor(whole / count);
  const extra = whole - base * count;
  return Array.from({ length: count }, (_, i) => base + (i < extra ? 1 : 0));
}

/**
 * A `.cpuprofile` for the merged tree (Chrome DevTools, speedscope). Samples are synthesised
 * from the merged hit counts, grouped per call path in pre-order, so that each sample's
 * duration (the delta to the next sample, the last one lasting until `endTime`) is its node's
 * share of the self time.
 */
export function toCpuProfile(merged: MergedProfile): CpuProfile {
  const order = preOrder(merged.root);
  const ids = new Map(order.map(({ node }, index) => [node, index + 1]));
  const nodes: Profiler.ProfileNode[] = order.map(({ node }) => {
    const out: Profiler.ProfileNode = {
      id: ids.get(node)!,
      callFrame: { ...node.callFrame },
      hitCount: node.hitCount,
      children: [...node.children.values()].map((child) => ids.get(child)!),
    };
    if (node.positionTicks.size > 0) {
      out.positionTicks = [...node.positionTicks].map(([line, ticks]) => ({ line, ticks }));
    }
    return out;
  });
  const samples: number[] = [];
  const durations: number[] = [];
  for (const { node } of order) {
    if (node.hitCount === 0) continue;
    for (let i = 0; i < node.hitCount; i++) samples.push(ids.get(node)!);
    durations.push(...spread(node.selfTime, node.hitCount));
  }
  const startTime = merged.startTime ?? 0;
  const timeDeltas = samples.length > 0 ? [0, ...durations.slice(0, -1)] : [];
  const endTime = startTime + durations.reduce((sum, d) => sum + d, 0);
  return { nodes, startTime, endTime, samples, timeDeltas };
}
