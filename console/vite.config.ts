import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The console is served by the mesh at /console (mesh.system.console); the build goes into the
// Python package so that a pip install carries it (.ci/build-console writes its MANIFEST).
// `npm run dev` proxies the API and the WebSockets to a running mesh (AGENTMESH_URL).
const mesh = process.env.AGENTMESH_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  base: "/console/",
  plugins: [react()],
  build: {
    outDir: "../services/mesh/system/console",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 700,
  },
  server: {
    proxy: {
      "/api": mesh,
      "/ws": { target: mesh, ws: true },
    },
  },
});
