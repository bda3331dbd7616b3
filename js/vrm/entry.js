// The page's VRM renderer: three.js and three-vrm, bundled into rolecast/web/static/vrm.js
// by scripts/build-web (no CDN when the page runs). avatar.js loads it when a character's
// avatar is a VRM model and calls window.RolecastVRM.mount(stage, url) once, then
// update(dt, state) every animation frame with the mouth's opening and vowel at the audio's
// time, the blink, and the reply's expression.
import * as THREE from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
import { VRMLoaderPlugin, VRMUtils } from "@pixiv/three-vrm";

// the timeline's vowels to VRM's mouth expressions; "n" (ん) is a nearly closed "ou"
const MOUTH = { a: "aa", i: "ih", u: "ou", e: "ee", o: "oh", n: "ou" };
const VISEMES = ["aa", "ih", "ou", "ee", "oh"];
const FACES = ["happy", "angry", "sad", "surprised"];

async function mount(stage, url) {
  const canvas = stage.querySelector("canvas") || stage.appendChild(document.createElement("canvas"));
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: true, alpha: true });
  renderer.setPixelRatio(Math.min(2, window.devicePixelRatio || 1));
  const scene = new THREE.Scene();
  const camera = new THREE.PerspectiveCamera(28, 1, 0.05, 50);
  const light = new THREE.DirectionalLight(0xffffff, Math.PI);
  light.position.set(1, 1, 1).normalize();
  scene.add(light, new THREE.AmbientLight(0xffffff, 0.7));

  const loader = new GLTFLoader();
  loader.register((parser) => new VRMLoaderPlugin(parser));
  const gltf = await loader.loadAsync(url);
  const vrm = gltf.userData.vrm;
  if (!vrm) throw new Error(`not a VRM model: ${url}`);
  VRMUtils.rotateVRM0(vrm); // VRM 0.x faces -z; 1.0 faces +z
  scene.add(vrm.scene);
  vrm.scene.updateMatrixWorld(true);

  // the camera frames the head (or the whole model where it has no head bone)
  const head = vrm.humanoid && vrm.humanoid.getNormalizedBoneNode("head");
  const box = new THREE.Box3().setFromObject(vrm.scene);
  const target = head ? head.getWorldPosition(new THREE.Vector3()) : box.getCenter(new THREE.Vector3());
  const size = box.getSize(new THREE.Vector3());
  const distance = head ? 0.9 : Math.max(size.x, size.y, size.z) * 2 + 0.1;
  camera.position.set(target.x, target.y, target.z + distance);
  camera.lookAt(target);

  const spine = vrm.humanoid && vrm.humanoid.getNormalizedBoneNode("spine");
  let t = 0;
  const ctl = {
    stage,
    canvas,
    vrm,
    dispose() {
      scene.remove(vrm.scene);
      VRMUtils.deepDispose(vrm.scene);
      renderer.dispose();
      renderer.forceContextLoss();
    },
    weights: {},
    frames: 0,
    update(dt, s) {
      t += dt;
      const em = vrm.expressionManager;
      if (em) {
        const key = MOUTH[s.vowel] || "aa";
        for (const v of VISEMES) em.setValue(v, 0);
        if (em.getExpression(key)) em.setValue(key, s.vowel === "n" ? s.opening * 0.3 : s.opening);
        if (em.getExpression("blink")) em.setValue("blink", s.blink);
        for (const f of FACES) if (em.getExpression(f)) em.setValue(f, s.expression === f ? 0.8 : 0);
      }
      if (spine) spine.rotation.z = Math.sin(t * 0.8) * 0.015; // idle: a slow sway
      vrm.update(dt);
      const w = canvas.clientWidth || 320, h = canvas.clientHeight || 360;
      if (canvas.width !== Math.floor(w * renderer.getPixelRatio())) {
        renderer.setSize(w, h, false);
        camera.aspect = w / h;
        camera.updateProjectionMatrix();
      }
      renderer.render(scene, camera);
      ctl.frames += 1;
      if (em) for (const v of [...VISEMES, "blink"]) ctl.weights[v] = em.getValue(v) || 0;
    },
  };
  return ctl;
}

window.RolecastVRM = { mount, version: THREE.REVISION };
