/** Builds dist/maskgpu.js and the demo page's script dist/demo/main.js; returns their paths. */
export function buildDemo(): Promise<{ library: string; page: string }>;
/**
 * Serves the demo, the bundles and models/ on 127.0.0.1 (`port` 0: a free one); builds first unless
 * `build: false`. `files` serves more files, request path -> file path (e.g. a second model:
 * { '/weights/x.safetensors': 'path/x.safetensors' }).
 */
export function startDemoServer(options?: { port?: number; build?: boolean; files?: Record<string, string> }): Promise<{ url: string; close(): Promise<void> }>;
