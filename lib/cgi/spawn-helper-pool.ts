import { directSpawner, type CgiSpawner } from './spawner.js';

// Placeholder until the helper design is measured.
export function sharedSpawnHelpers(): CgiSpawner {
  return directSpawner;
}
